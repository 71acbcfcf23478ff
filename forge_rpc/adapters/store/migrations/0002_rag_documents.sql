-- RAG, as RagService serves it (issue 4): what 0001 left out.

-- Namespaces: a description, fixed chunking, a last-change time, and names unique per owner rather than
-- globally (every user has their own "default"; NULL is the owner while there is no auth, and NULLS NOT
-- DISTINCT keeps that owner's names unique too).
ALTER TABLE rag_namespaces
    ADD COLUMN description   text NOT NULL DEFAULT '',
    ADD COLUMN chunk_size    integer NOT NULL DEFAULT 256 CHECK (chunk_size BETWEEN 8 AND 8192),
    ADD COLUMN chunk_overlap integer NOT NULL DEFAULT 32 CHECK (chunk_overlap >= 0 AND chunk_overlap < chunk_size),
    ADD COLUMN updated_at    timestamptz NOT NULL DEFAULT now();

ALTER TABLE rag_namespaces DROP CONSTRAINT rag_namespaces_name_key;
ALTER TABLE rag_namespaces ADD CONSTRAINT rag_namespaces_owner_name UNIQUE NULLS NOT DISTINCT (owner, name);

-- Documents keep their full text (GetDocument returns it; chunks overlap, so it cannot be rebuilt from them)
-- and their counts, so listings need no aggregate over rag_chunks.
ALTER TABLE rag_documents
    ADD COLUMN content     text NOT NULL DEFAULT '',
    ADD COLUMN token_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN chunk_count integer NOT NULL DEFAULT 0;
