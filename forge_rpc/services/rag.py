"""RagService: proto ⇄ the RAG store, the embedders, the chunker and (for `generate_response`) the ChatEngine.

Auth does not exist yet (issue 5): the caller is nobody, so namespaces are owned by NULL unless an (admin-only,
once auth lands) `user_id` names another owner.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
from forge.rag.v1 import rag_pb2 as pb
from forge.type.v1 import usage_pb2
from google.protobuf import json_format

from ..adapters.embedders import Embedder, EmbedderDirectory, TokenAware
from ..adapters.store.rag_store import (
    ALL_OWNERS,
    ChunkWrite,
    Condition,
    DocumentWrite,
    Match,
    NamespaceRow,
    RagStore,
    fuse_rankings,
)
from ..domain import (
    ChatEngine,
    ChatMessage,
    ChatParams,
    FailedPrecondition,
    FieldViolation,
    ForgeError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PriceList,
    Usage,
)
from ..domain.chunking import chunk_text, word_spans
from ..domain.ledger import Operation, UsageSink
from .chat_convert import served_model, usage_message
from .context import CallContext, principal
from .paging import next_page_token, page_offset, page_size
from .rag_convert import check_name, document_cursor, document_message, namespace_message
from .rag_convert import conditions as query_conditions
from .usage_recording import Generation

__all__ = ["RagConfig", "RagServicer"]

_CITATION = re.compile(r"\[(\d{1,3})\]")
_ANSWER_PROMPT = (
    "Answer the question using only the numbered sources below. Cite the sources you use with their markers, "
    "e.g. [1] or [2][3]. If the sources do not contain the answer, say so."
)


@dataclass(frozen=True, slots=True)
class RagConfig:
    default_namespace: str = "default"
    """Namespace used when a request names none."""
    max_documents_per_call: int = 1000
    """Documents per IndexDocuments call or ImportDocuments message."""
    max_top_k: int = 100
    """Largest `top_k` a query may ask for."""
    candidates_per_ranking: int = 50
    """Chunks each ranking contributes before hybrid fusion (at least top_k)."""
    embed_batch_chunks: int = 512
    """Chunks embedded and written per step while indexing: bounds memory on large imports."""
    max_context_chars: int = 24_000
    """Retrieved text handed to the model for `generate_response`, best matches first."""


def _caller(context: CallContext) -> str | None:
    """The authenticated user; None for the local operator (auth off) and anonymous callers."""
    return principal.get().user_id


def _provider_of(embedder: Embedder) -> str:
    return embedder.name.split("/", 1)[0]


class RagServicer:
    def __init__(
        self,
        store: RagStore,
        embedders: EmbedderDirectory,
        engine: ChatEngine | None,
        config: RagConfig | None = None,
        ledger: UsageSink | None = None,
        prices: PriceList | None = None,
    ) -> None:
        self._store = store
        self._embedders = embedders
        self._engine = engine
        self._config = config or RagConfig()
        self._ledger = ledger
        self._prices = prices

    # --- helpers ----------------------------------------------------------------------------------------------

    def _generation(self, operation: Operation, model: str, context: CallContext) -> Generation:
        return Generation(self._ledger, operation, model, context)

    def _embedding_usage(self, embedder: Embedder, tokens: int) -> Usage:
        cost = self._prices.cost(embedder.name.split("/", 1)[-1], tokens, 0) if self._prices is not None else 0.0
        return Usage(prompt_tokens=tokens, cost_usd=cost)

    def _owner(self, user_id: str, context: CallContext) -> str | None:
        """Whose namespaces a call reaches: the caller's own, or — for admins only — the user it names."""
        who = principal.get()
        if user_id and user_id != who.user_id and not who.is_admin:
            raise PermissionDenied("only admins may reach another user's namespaces", "NOT_OWNER")
        return user_id or who.user_id

    async def _namespace(self, owner: str | None, name: str) -> NamespaceRow:
        found = await self._store.get_namespace(owner, name)
        if found is None:
            raise NotFound("namespace", name)
        return found

    def _embedder_of(self, ns: NamespaceRow, requested: str = "") -> Embedder:
        if requested and requested != ns.embedder:
            raise FailedPrecondition(
                f"namespace {ns.name!r} is embedded with {ns.embedder!r} ({ns.dimension}-d), not {requested!r}: "
                "vectors of different embedders cannot be compared; use a namespace created with that embedder",
                "EMBEDDER_MISMATCH",
            )
        try:
            embedder = self._embedders.resolve(ns.embedder)
        except ForgeError as exc:
            raise FailedPrecondition(
                f"namespace {ns.name!r} uses embedder {ns.embedder!r}, which this server does not configure",
                "EMBEDDER_UNAVAILABLE",
            ) from exc
        return embedder

    async def _dimension(self, embedder: Embedder) -> int:
        # A provider model's length is learnt from one call.
        return embedder.dimension or len((await embedder.embed(["dimension probe"]))[0])

    async def _create(
        self, owner: str | None, name: str, embedder_name: str, *, exist_ok: bool, spec: pb.Namespace | None = None
    ) -> NamespaceRow:
        embedder = self._embedders.resolve(embedder_name)
        limit = embedder.max_tokens if isinstance(embedder, TokenAware) else 8192
        size = spec.chunk_size if spec is not None and spec.chunk_size else min(256, limit)
        # proto3 cannot tell an explicit 0 from unset: 0 means the default overlap.
        overlap = spec.chunk_overlap if spec is not None and spec.chunk_overlap else min(32, size // 4)
        violations = []
        if not 8 <= size <= limit:
            violations.append(FieldViolation("namespace.chunk_size", f"must be 8 to {limit} for {embedder.name}"))
        if not 0 <= overlap < size:
            violations.append(FieldViolation("namespace.chunk_overlap", "must be at least 0 and below chunk_size"))
        if violations:
            raise InvalidArgument(violations)
        return await self._store.create_namespace(
            owner,
            name,
            embedder=embedder.name,
            dimension=await self._dimension(embedder),
            description=spec.description if spec is not None else "",
            chunk_size=size,
            chunk_overlap=overlap,
            exist_ok=exist_ok,
        )

    def _chunk(self, embedder: Embedder, ns: NamespaceRow, content: str) -> tuple[list[ChunkWrite], int]:
        tokens = embedder.token_spans(content) if isinstance(embedder, TokenAware) else word_spans(content)
        chunks = chunk_text(content, chunk_size=ns.chunk_size, overlap=ns.chunk_overlap, spans=lambda _: tokens)
        return [ChunkWrite(c.text, c.token_count) for c in chunks], len(tokens)

    async def _index(
        self, ns: NamespaceRow, embedder: Embedder, docs: Sequence[pb.Document], field: str
    ) -> tuple[list[str], int, int, list[tuple[str, str]]]:
        """Chunks, embeds and writes one batch: (ids, chunks written, embedding tokens, rejected (id, why))."""
        rejected: list[tuple[str, str]] = []
        accepted: dict[str, pb.Document] = {}  # a repeated id: the last one wins
        ids: list[str] = []
        for i, doc in enumerate(docs):
            doc_id = doc.document_id or uuid.uuid4().hex
            if not doc.content.strip():
                rejected.append((doc.document_id or f"#{i}", f"{field}[{i}].content: required"))
            elif len(doc_id) > 256:
                rejected.append((doc_id[:32] + "…", f"{field}[{i}].id: at most 256 characters"))
            else:
                accepted[doc_id] = doc
                ids.append(doc_id)
        known = await self._store.content_hashes(ns.id, list(accepted))
        writes: list[DocumentWrite] = []
        for doc_id, doc in accepted.items():
            chunks, tokens = await asyncio.to_thread(self._chunk, embedder, ns, doc.content)
            digest = hashlib.sha256(doc.content.encode()).hexdigest()
            metadata = json_format.MessageToDict(doc.metadata) if doc.HasField("metadata") else {}
            write = DocumentWrite(doc_id, doc.content, metadata, digest, tokens, chunks)
            # Unchanged content keeps its chunks and vectors: only the metadata is rewritten.
            write.embeddings = None if known.get(doc_id) == digest else np.empty((0, ns.dimension), np.float32)
            writes.append(write)
        pending = [w for w in writes if w.embeddings is not None]
        texts = [c.text for w in pending for c in w.chunks]
        used = 0
        if texts:
            result = await embedder.embed_counted(texts)
            vectors = np.asarray(result.vectors, dtype=np.float32)
            if vectors.shape[1] != ns.dimension:
                raise FailedPrecondition(
                    f"{embedder.name} produced {vectors.shape[1]}-d vectors; namespace {ns.name!r} holds "
                    f"{ns.dimension}-d ones",
                    "EMBEDDER_MISMATCH",
                )
            used = result.prompt_tokens
            at = 0
            for w in pending:
                w.embeddings = vectors[at : at + len(w.chunks)]
                at += len(w.chunks)
        written = await self._store.write_documents(ns.id, writes)
        return ids, written, used, rejected

    async def _index_in_steps(
        self, ns: NamespaceRow, embedder: Embedder, docs: Sequence[pb.Document], field: str
    ) -> tuple[list[str], int, int, list[tuple[str, str]]]:
        """`_index` over slices small enough that a batch's vectors stay a few MB."""
        ids: list[str] = []
        chunks = tokens = 0
        rejected: list[tuple[str, str]] = []
        # About 4 chunks per document is typical; the slice keeps `embed_batch_chunks` as the rough bound.
        step = max(1, self._config.embed_batch_chunks // 4)
        for start in range(0, len(docs), step):
            part = await self._index(ns, embedder, docs[start : start + step], field)
            ids += part[0]
            chunks += part[1]
            tokens += part[2]
            rejected += part[3]
        return ids, chunks, tokens, rejected

    async def _target(
        self, name: str, embedder: str, context: CallContext, field: str = "namespace"
    ) -> tuple[NamespaceRow, Embedder]:
        name = check_name(name or self._config.default_namespace, field)
        owner = _caller(context)
        ns = await self._store.get_namespace(owner, name) or await self._create(owner, name, embedder, exist_ok=True)
        return ns, self._embedder_of(ns, embedder)

    # --- namespaces -------------------------------------------------------------------------------------------

    async def CreateNamespace(self, request: pb.CreateNamespaceRequest, context: CallContext) -> pb.Namespace:
        spec = request.namespace
        name = check_name(spec.name, "namespace.name")
        ns = await self._create(_caller(context), name, spec.embedder, exist_ok=False, spec=spec)
        return namespace_message(ns)

    async def GetNamespace(self, request: pb.GetNamespaceRequest, context: CallContext) -> pb.Namespace:
        return namespace_message(await self._namespace(self._owner(request.user_id, context), request.name))

    async def ListNamespaces(
        self, request: pb.ListNamespacesRequest, context: CallContext
    ) -> pb.ListNamespacesResponse:
        size, offset = page_size(request.page_size), page_offset(request.page_token)
        if request.user_id == ALL_OWNERS and not principal.get().is_admin:
            raise PermissionDenied("only admins may list every user's namespaces", "NOT_OWNER")
        owner = ALL_OWNERS if request.user_id == ALL_OWNERS else self._owner(request.user_id, context)
        rows, total = await self._store.list_namespaces(owner, size, offset)
        token = next_page_token(offset, len(rows), total)
        return pb.ListNamespacesResponse(namespaces=[namespace_message(r) for r in rows], next_page_token=token)

    async def DeleteNamespace(
        self, request: pb.DeleteNamespaceRequest, context: CallContext
    ) -> pb.DeleteNamespaceResponse:
        gone = await self._store.delete_namespace(self._owner(request.user_id, context), request.name)
        if gone is None:
            return pb.DeleteNamespaceResponse(deleted=False, name=request.name)
        return pb.DeleteNamespaceResponse(
            deleted=True, name=gone.name, documents_deleted=gone.document_count, chunks_deleted=gone.chunk_count
        )

    # --- documents --------------------------------------------------------------------------------------------

    async def IndexDocuments(
        self, request: pb.IndexDocumentsRequest, context: CallContext
    ) -> pb.IndexDocumentsResponse:
        if not request.documents:
            raise InvalidArgument([FieldViolation("documents", "required")])
        if len(request.documents) > self._config.max_documents_per_call:
            raise InvalidArgument(
                [FieldViolation("documents", f"at most {self._config.max_documents_per_call}; use ImportDocuments")]
            )
        # All or nothing: every document is checked before any is written.
        violations = [
            FieldViolation(f"documents[{i}].{name}", why)
            for i, doc in enumerate(request.documents)
            for name, why in (("content", "required"), ("id", "at most 256 characters"))
            if (name == "content" and not doc.content.strip()) or (name == "id" and len(doc.document_id) > 256)
        ]
        if violations:
            raise InvalidArgument(violations)
        ns, embedder = await self._target(request.namespace, request.embedder, context)
        with self._generation(Operation.EMBEDDING, embedder.name, context) as gen:
            ids, chunks, tokens, _ = await self._index_in_steps(ns, embedder, request.documents, "documents")
            gen.completed(embedder.name, _provider_of(embedder), self._embedding_usage(embedder, tokens))
        return pb.IndexDocumentsResponse(
            indexed=True,
            document_count=len(ids),
            namespace=ns.name,
            index_id=uuid.uuid4().hex,
            document_ids=ids,
            chunk_count=chunks,
            usage=usage_pb2.Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def ImportDocuments(
        self, request_iterator: AsyncIterator[pb.ImportDocumentsRequest], context: CallContext
    ) -> pb.ImportDocumentsResponse:
        target: tuple[NamespaceRow, Embedder] | None = None
        documents = chunks = tokens = 0
        failures: list[pb.ImportFailure] = []
        with self._generation(Operation.EMBEDDING, "", context) as gen:
            async for message in request_iterator:
                if target is None:
                    target = await self._target(message.namespace, message.embedder, context)
                    gen.model = target[1].name
                elif message.namespace and message.namespace != target[0].name:
                    raise InvalidArgument([FieldViolation("namespace", "every message must name the first one's")])
                if len(message.documents) > self._config.max_documents_per_call:
                    limit = self._config.max_documents_per_call
                    raise InvalidArgument([FieldViolation("documents", f"at most {limit}")])
                ids, written, used, rejected = await self._index_in_steps(*target, message.documents, "documents")
                documents, chunks, tokens = documents + len(ids), chunks + written, tokens + used
                gen.usage = Usage(prompt_tokens=tokens)  # a cancelled import keeps what it embedded
                failures += [pb.ImportFailure(document_id=i, message=why) for i, why in rejected]
            if target is not None:
                gen.completed(target[1].name, _provider_of(target[1]), self._embedding_usage(target[1], tokens))
        name = target[0].name if target is not None else self._config.default_namespace
        return pb.ImportDocumentsResponse(
            namespace=name,
            document_count=documents,
            chunk_count=chunks,
            failures=failures,
            usage=usage_pb2.Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def GetDocument(self, request: pb.GetDocumentRequest, context: CallContext) -> pb.Document:
        ns = await self._namespace(_caller(context), request.namespace or self._config.default_namespace)
        doc = await self._store.get_document(ns, request.document_id)
        if doc is None:
            raise NotFound("document", request.document_id)
        return document_message(doc)

    async def ListDocuments(self, request: pb.ListDocumentsRequest, context: CallContext) -> pb.ListDocumentsResponse:
        ns = await self._namespace(_caller(context), request.namespace or self._config.default_namespace)
        docs, token = await self._store.list_documents(
            ns, document_cursor(request.page_token), page_size(request.page_size), request.include_content
        )
        return pb.ListDocumentsResponse(documents=[document_message(d) for d in docs], next_page_token=token)

    async def DeleteDocument(
        self, request: pb.DeleteDocumentRequest, context: CallContext
    ) -> pb.DeleteDocumentResponse:
        if not request.document_id:
            raise InvalidArgument([FieldViolation("document_id", "required")])
        name = request.namespace or self._config.default_namespace
        ns = await self._store.get_namespace(_caller(context), name)
        removed = None if ns is None else await self._store.delete_document(ns.id, request.document_id)
        return pb.DeleteDocumentResponse(
            deleted=removed is not None, document_id=request.document_id, namespace=name, chunks_deleted=removed or 0
        )

    # --- query ------------------------------------------------------------------------------------------------

    async def _retrieve(
        self, request: pb.QueryRequest, ns: NamespaceRow, top_k: int, conditions: list[Condition]
    ) -> list[Match]:
        mode = request.mode or pb.SEARCH_MODE_VECTOR
        if mode == pb.SEARCH_MODE_KEYWORD:
            if request.embedder and request.embedder != ns.embedder:
                self._embedder_of(ns, request.embedder)  # raises the mismatch
            return await self._store.search_text(ns, request.query, top_k, conditions)
        embedder = self._embedder_of(ns, request.embedder)
        vector = np.asarray((await embedder.embed([request.query]))[0], dtype=np.float32)
        if vector.shape[0] != ns.dimension:
            raise FailedPrecondition(
                f"{embedder.name} produced a {vector.shape[0]}-d query vector; namespace {ns.name!r} holds "
                f"{ns.dimension}-d ones",
                "EMBEDDER_MISMATCH",
            )
        if mode == pb.SEARCH_MODE_VECTOR:
            hits = await self._store.search_vector(ns, vector, top_k, conditions)
            if request.HasField("min_score"):
                hits = [h for h in hits if h.score >= request.min_score]
            return hits
        wide = max(top_k, self._config.candidates_per_ranking)
        by_vector, by_text = await asyncio.gather(
            self._store.search_vector(ns, vector, wide, conditions),
            self._store.search_text(ns, request.query, wide, conditions),
        )
        return fuse_rankings({"vector": by_vector, "text": by_text}, top_k)

    async def _answer(
        self, request: pb.QueryRequest, hits: list[Match], context: CallContext, gen: Generation
    ) -> pb.QueryResponse:
        if self._engine is None:
            raise FailedPrecondition("generate_response needs a chat engine, and this server has none")
        sources: list[str] = []
        used = 0
        for n, hit in enumerate(hits, start=1):
            if used + len(hit.content) > self._config.max_context_chars and sources:
                break
            title = hit.metadata.get("title")
            head = f"[{n}] (document {hit.document_id}" + (f", {title!r}" if isinstance(title, str) else "") + ")"
            sources.append(f"{head}\n{hit.content}")
            used += len(hit.content)
        params = ChatParams(
            model=request.model,
            messages=[
                ChatMessage("system", _ANSWER_PROMPT),
                ChatMessage("user", "Sources:\n\n" + "\n\n".join(sources) + f"\n\nQuestion: {request.query}"),
            ],
            temperature=request.temperature if request.HasField("temperature") else None,
            max_tokens=request.max_tokens if request.HasField("max_tokens") else None,
        )
        who = principal.get()
        if who.allowed_models:
            # The auth policy checks a named model; an empty one means the default, known only here.
            model = params.model or (await self._engine.route(""))[0].deployment.model_name
            if not who.may_use_model(model):
                raise PermissionDenied(f"this API key may not use model {model!r}", "MODEL_NOT_ALLOWED")
        result = await self._engine.complete(params, context.time_remaining())
        gen.completed(served_model(result.route), result.provider, result.usage)
        text = result.completion.text
        cited = sorted({int(m) for m in _CITATION.findall(text) if 1 <= int(m) <= len(sources)})
        # An answer without markers was still written from every source it was given: cite them all.
        citations = [
            pb.Citation(
                index=n,
                document_id=hits[n - 1].document_id,
                chunk_index=hits[n - 1].chunk_index,
                title=str(hits[n - 1].metadata.get("title", "")),
            )
            for n in (cited or range(1, len(sources) + 1))
        ]
        return pb.QueryResponse(
            generated_response=text,
            citations=citations,
            usage=usage_message(result.usage),
            model=served_model(result.route),
        )

    async def Query(self, request: pb.QueryRequest, context: CallContext) -> pb.QueryResponse:
        violations = []
        if not request.query.strip():
            violations.append(FieldViolation("query", "required"))
        if not 0 <= request.top_k <= self._config.max_top_k:
            violations.append(FieldViolation("top_k", f"must be 1 to {self._config.max_top_k}"))
        if request.mode not in pb.SearchMode.values():
            violations.append(FieldViolation("mode", "unknown search mode"))
        if violations:
            raise InvalidArgument(violations)
        conditions = query_conditions(request)
        started = time.perf_counter()
        ns = await self._namespace(_caller(context), request.namespace or self._config.default_namespace)
        # One RAG row per query: the generation's usage when it answers, else the retrieval alone.
        with self._generation(Operation.RAG, request.model or ns.embedder, context) as gen:
            hits = await self._retrieve(request, ns, request.top_k or 5, conditions)
            took_ms = (time.perf_counter() - started) * 1000
            if request.generate_response:
                response = await self._answer(request, hits, context, gen)
            else:
                response = pb.QueryResponse()
                gen.completed(ns.embedder, ns.embedder.split("/", 1)[0], Usage())
        include_metadata = request.include_metadata if request.HasField("include_metadata") else True
        for hit in hits:
            match = response.relevant_documents.add(
                id=hit.document_id,
                document_id=hit.document_id,
                chunk_index=hit.chunk_index,
                content=hit.content,
                score=hit.score,
            )
            if include_metadata:
                match.metadata.update(hit.metadata)
            if hit.vector_score is not None:
                match.vector_score = hit.vector_score
            if hit.text_score is not None:
                match.text_score = hit.text_score
        response.query = request.query
        response.namespace = ns.name
        response.mode = request.mode or pb.SEARCH_MODE_VECTOR
        response.took_ms = took_ms
        return response

    # --- embeddings -------------------------------------------------------------------------------------------

    async def CreateEmbeddings(
        self, request: pb.CreateEmbeddingsRequest, context: CallContext
    ) -> pb.CreateEmbeddingsResponse:
        violations = []
        if not request.input:
            violations.append(FieldViolation("input", "required"))
        elif len(request.input) > 2048:
            violations.append(FieldViolation("input", "at most 2048 texts"))
        if violations:
            raise InvalidArgument(violations)
        embedder = self._embedders.resolve(request.model, "model")
        if request.HasField("dimensions") and embedder.dimension and request.dimensions != embedder.dimension:
            raise InvalidArgument(
                [FieldViolation("dimensions", f"{embedder.name} produces {embedder.dimension}-d vectors only")]
            )
        with self._generation(Operation.EMBEDDING, embedder.name, context) as gen:
            result = await embedder.embed_counted(list(request.input))
            tokens = result.prompt_tokens
            gen.completed(embedder.name, _provider_of(embedder), self._embedding_usage(embedder, tokens))
        return pb.CreateEmbeddingsResponse(
            data=[pb.Embedding(index=i, embedding=v) for i, v in enumerate(result.vectors)],
            model=embedder.name,
            usage=usage_pb2.Usage(prompt_tokens=tokens, total_tokens=tokens),
            dimension=len(result.vectors[0]) if result.vectors else embedder.dimension,
        )
