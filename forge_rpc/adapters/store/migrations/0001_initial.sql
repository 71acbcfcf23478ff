-- 0001_initial: the first schema — usage ledger, RAG storage, model preferences, job queue.
--
-- Applied by migrations.py in one transaction together with its schema_migrations row. Never edit this file
-- once released (the runner refuses a changed checksum): add 0002_….sql. Statements that cannot run inside
-- a transaction (CREATE INDEX CONCURRENTLY) do not belong in a migration file.

-- pgvector. The embedded server has it in template1 already; an external server needs the extension
-- installed, and either the privilege to create it or an operator who ran this line beforehand.
CREATE EXTENSION IF NOT EXISTS vector;

-- Keeps updated_at honest without every writer having to remember it.
CREATE FUNCTION forge_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;


-- ---------------------------------------------------------------------------------------------------------
-- Usage ledger: exactly one row per generation (chat, embedding, RAG answer), keyed by the request id.
-- The writer batches rows off the hot path and inserts with ON CONFLICT (request_id) DO NOTHING, so a
-- retried batch or a retried request id is never counted twice.
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE usage_ledger (
    request_id        text PRIMARY KEY,
    operation         text NOT NULL DEFAULT 'chat' CHECK (operation IN ('chat', 'embedding', 'rag')),
    user_id           text,                 -- the authenticated principal; NULL with auth off
    api_key_id        text,                 -- which key was used (its id, never the secret)
    model             text NOT NULL,        -- the model name the request resolved to
    provider          text,                 -- the route that answered; NULL if it failed before routing
    prompt_tokens     integer NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens integer NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    total_tokens      integer GENERATED ALWAYS AS (prompt_tokens + completion_tokens) STORED,
    cost_usd          numeric(20, 10) NOT NULL DEFAULT 0,  -- numeric: sums over millions of rows stay exact
    latency_ms        integer CHECK (latency_ms >= 0),     -- request start to last byte
    ttft_ms           integer CHECK (ttft_ms >= 0),        -- NULL when no token was produced
    status            text NOT NULL CHECK (status IN ('completed', 'cancelled', 'failed')),
    error_reason      text,                 -- ErrorInfo reason (UPPER_SNAKE) when not completed
    client_ip         inet,
    prompt_text       text,                 -- only when content logging is enabled in config
    response_text     text,
    -- When the request started, set by the writer: rows arrive in batches, so insert time would skew
    -- per-minute history.
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Totals and history over a time window; per-user breakdowns; per-model statistics.
CREATE INDEX usage_ledger_created_at ON usage_ledger (created_at);
CREATE INDEX usage_ledger_user_created_at ON usage_ledger (user_id, created_at);
CREATE INDEX usage_ledger_model_created_at ON usage_ledger (model, created_at);


-- ---------------------------------------------------------------------------------------------------------
-- RAG: namespaces → documents → chunks.
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE rag_namespaces (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    owner       text,
    -- Which embedder produced the vectors, e.g. 'local/all-MiniLM-L6-v2', 'openai/text-embedding-3-small'.
    -- A query embedded by anything else is meaningless here (FAILED_PRECONDITION).
    embedder    text NOT NULL,
    -- 2000 is HNSW's limit for `vector`; larger embeddings would be indexed as halfvec (a later migration).
    dimension   integer NOT NULL CHECK (dimension BETWEEN 1 AND 2000),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rag_documents (
    namespace_id    bigint NOT NULL REFERENCES rag_namespaces (id) ON DELETE CASCADE,
    id              text NOT NULL,          -- the client's document id
    metadata        jsonb NOT NULL DEFAULT '{}',  -- title, author, tags, any JSON
    content_sha256  text,                   -- re-indexing unchanged content can skip embedding
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace_id, id)
);

-- Metadata filters (`metadata @> '{"author": "x"}'`).
CREATE INDEX rag_documents_metadata ON rag_documents USING gin (metadata jsonb_path_ops);

CREATE TRIGGER rag_documents_touch BEFORE UPDATE ON rag_documents
    FOR EACH ROW EXECUTE FUNCTION forge_touch_updated_at();

CREATE TABLE rag_chunks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace_id  bigint NOT NULL,
    document_id   text NOT NULL,
    ordinal       integer NOT NULL,         -- position in the document, from 0
    content       text NOT NULL,
    token_count   integer NOT NULL DEFAULT 0,
    -- No fixed dimension: namespaces differ (384 for the local MiniLM, 1536 for OpenAI's small model…).
    -- See the per-namespace HNSW index below.
    embedding     vector NOT NULL,
    -- Full-text side of hybrid search (fused with the vector ranking by reciprocal rank fusion).
    content_tsv   tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    -- Deleting or re-indexing a document removes its chunks with it.
    FOREIGN KEY (namespace_id, document_id) REFERENCES rag_documents (namespace_id, id) ON DELETE CASCADE,
    UNIQUE (namespace_id, document_id, ordinal)
);

CREATE INDEX rag_chunks_content_tsv ON rag_chunks USING gin (content_tsv);

-- HNSW needs a fixed dimension, so each namespace gets its own partial expression index, created with the
-- namespace and dropped with it:
--
--     CREATE INDEX rag_chunks_hnsw_<id> ON rag_chunks
--         USING hnsw ((embedding::vector(<dimension>)) vector_cosine_ops) WHERE namespace_id = <id>
--
-- A query uses it when it repeats the expression and the predicate, the namespace id as a literal (a bind
-- parameter cannot prove a partial index's predicate in a generic plan):
--
--     SELECT … FROM rag_chunks WHERE namespace_id = 42 ORDER BY embedding::vector(384) <=> $1 LIMIT 10
--
-- With metadata filters, SET hnsw.iterative_scan = relaxed_order so the scan keeps going until it has k
-- rows that pass. The cast doubles as a guard: a chunk of the wrong dimension fails the index expression and
-- is rejected. Why not one table per dimension: one table keeps the foreign keys, the full-text index and
-- the cascades in one place, while a partial index holds only its namespace's rows, so each index is as
-- small and as fast as a table of its own. Why not a partition per namespace: many small namespaces would
-- mean as many tables, and planning time grows with the partition count.
CREATE FUNCTION forge_rag_namespace_index() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format(
            'CREATE INDEX %I ON %I.rag_chunks USING hnsw ((embedding::vector(%s)) vector_cosine_ops) '
            'WHERE namespace_id = %s',
            'rag_chunks_hnsw_' || NEW.id, TG_TABLE_SCHEMA, NEW.dimension, NEW.id);
        RETURN NEW;
    ELSIF TG_OP = 'UPDATE' THEN
        IF NEW.dimension <> OLD.dimension THEN
            RAISE EXCEPTION 'the dimension of RAG namespace % cannot change; create a new namespace', OLD.name
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    EXECUTE format('DROP INDEX IF EXISTS %I.%I', TG_TABLE_SCHEMA, 'rag_chunks_hnsw_' || OLD.id);
    RETURN OLD;
END
$$;

CREATE TRIGGER rag_namespaces_index AFTER INSERT OR DELETE OR UPDATE OF dimension ON rag_namespaces
    FOR EACH ROW EXECUTE FUNCTION forge_rag_namespace_index();


-- ---------------------------------------------------------------------------------------------------------
-- Model repository: stored preferences per model, merged into model listings.
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE model_preferences (
    name          text PRIMARY KEY,         -- the model name as listed (e.g. 'llama3.2:3b', 'gpt-4o-mini')
    description   text NOT NULL DEFAULT '',
    is_favorite   boolean NOT NULL DEFAULT false,
    is_default    boolean NOT NULL DEFAULT false,  -- the model used when a request names none
    tags          text[] NOT NULL DEFAULT '{}',
    -- Sync with the providers: a model they no longer list is flagged, not deleted (its preferences stay).
    available     boolean NOT NULL DEFAULT true,
    last_seen_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- At most one default. The check is per row, so moving the default takes two statements in one
-- transaction: clear the old default, then set the new one.
CREATE UNIQUE INDEX model_preferences_one_default ON model_preferences (is_default) WHERE is_default;

CREATE TRIGGER model_preferences_touch BEFORE UPDATE ON model_preferences
    FOR EACH ROW EXECUTE FUNCTION forge_touch_updated_at();


-- ---------------------------------------------------------------------------------------------------------
-- Jobs (training and other long-running work): a queue any replica can claim from, with leases.
-- Claim: UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at = now() + $2,
--            attempts = attempts + 1, started_at = coalesce(started_at, now())
--        WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND run_after <= now()
--                    ORDER BY priority DESC, created_at FOR UPDATE SKIP LOCKED LIMIT 1)
--        RETURNING *
-- A replica that dies stops renewing its lease; another one requeues jobs whose lease has expired.
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE jobs (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind              text NOT NULL,        -- 'training', …
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    owner             text,                 -- who created it
    payload           jsonb NOT NULL DEFAULT '{}',  -- the request
    result            jsonb,                -- the outcome, once finished
    error_reason      text,
    priority          integer NOT NULL DEFAULT 0,   -- higher first
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL DEFAULT 3,
    run_after         timestamptz NOT NULL DEFAULT now(),  -- retry backoff: not claimable before this
    lease_owner       text,                 -- the replica working on it
    lease_expires_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    CHECK (state <> 'running' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

CREATE INDEX jobs_claimable ON jobs (priority DESC, created_at) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_owner_created_at ON jobs (owner, created_at);

CREATE TRIGGER jobs_touch BEFORE UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION forge_touch_updated_at();

-- Progress, state changes and logs of a job, append-only. A watcher resumes after the last id it saw; one
-- job's events are written by its lease holder in order, so their ids are in order.
CREATE TABLE job_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    type        text NOT NULL,              -- 'state', 'progress', 'log', 'metric', …
    data        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_events_job_id ON job_events (job_id, id);

CREATE FUNCTION forge_refuse_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'feature_not_supported';
END
$$;

-- Deletes stay possible (a job's events go with the job).
CREATE TRIGGER job_events_append_only BEFORE UPDATE ON job_events
    FOR EACH ROW EXECUTE FUNCTION forge_refuse_update();
