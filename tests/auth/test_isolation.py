"""Per-user isolation with auth on: a user sees only their own RAG namespaces and documents, usage and request
logs; naming another user, listing everyone's, and clearing data are for admins, who see all."""

from __future__ import annotations

import grpc
import pytest
from forge.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.rag.v1 import rag_pb2, rag_pb2_grpc

from forge_rpc.server.app import ForgeApp
from tests.auth.conftest import Accounts, bearer, refusal, unique

pytestmark = pytest.mark.asyncio


async def test_rag_namespaces_are_per_user(accounts: Accounts) -> None:
    rag = rag_pb2_grpc.RagServiceStub(accounts.channel)
    alice, bob, admin = await accounts.new_user(), await accounts.new_user(), await accounts.admin()
    ns = unique("notes")
    await rag.IndexDocuments(
        rag_pb2.IndexDocumentsRequest(
            namespace=ns, documents=[rag_pb2.Document(document_id="secret", content="Alice's launch codes.")]
        ),
        metadata=bearer(alice.access_token),
    )
    mine = await rag.ListNamespaces(rag_pb2.ListNamespacesRequest(), metadata=bearer(alice.access_token))
    assert ns in [n.name for n in mine.namespaces]
    theirs = await rag.ListNamespaces(rag_pb2.ListNamespacesRequest(), metadata=bearer(bob.access_token))
    assert ns not in [n.name for n in theirs.namespaces]

    # Bob asking for "the same" namespace reaches his own (absent), never Alice's documents.
    err = await refusal(
        rag.GetDocument(
            rag_pb2.GetDocumentRequest(namespace=ns, document_id="secret"), metadata=bearer(bob.access_token)
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await refusal(
        rag.GetNamespace(rag_pb2.GetNamespaceRequest(name=ns, user_id=alice.user.id), metadata=bearer(bob.access_token))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = await refusal(
        rag.ListNamespaces(rag_pb2.ListNamespacesRequest(user_id="*"), metadata=bearer(bob.access_token))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED

    # An admin may reach Alice's namespace by naming her, and list everyone's.
    seen = await rag.GetNamespace(
        rag_pb2.GetNamespaceRequest(name=ns, user_id=alice.user.id), metadata=bearer(admin.access_token)
    )
    assert seen.document_count == 1
    everyone = await rag.ListNamespaces(
        rag_pb2.ListNamespacesRequest(user_id="*", page_size=1000), metadata=bearer(admin.access_token)
    )
    assert ns in [n.name for n in everyone.namespaces]


async def test_usage_and_logs_are_per_user(accounts: Accounts, secured: ForgeApp) -> None:
    chat = chat_pb2_grpc.ChatServiceStub(accounts.channel)
    analytics = analytics_pb2_grpc.AnalyticsServiceStub(accounts.channel)
    alice, bob, admin = await accounts.new_user(), await accounts.new_user(), await accounts.admin()
    rid = unique("alice-call")
    await chat.CreateChatCompletion(
        chat_pb2.CreateChatCompletionRequest(
            chat=chat_pb2.ChatRequest(model="fake", messages=[chat_pb2.Message(role="user", content="hi")])
        ),
        metadata=(*bearer(alice.access_token), ("x-request-id", rid)),
    )
    assert secured.ledger is not None
    await secured.ledger.flush()

    def ids(reply: analytics_pb2.ListRequestLogsResponse) -> list[str]:
        return [log.id for log in reply.logs]

    request = analytics_pb2.ListRequestLogsRequest(limit=1000)
    assert rid in ids(await analytics.ListRequestLogs(request, metadata=bearer(alice.access_token)))
    assert rid not in ids(await analytics.ListRequestLogs(request, metadata=bearer(bob.access_token)))
    assert rid in ids(await analytics.ListRequestLogs(request, metadata=bearer(admin.access_token)))

    own = await analytics.GetUserUsage(
        analytics_pb2.GetUserUsageRequest(user_id=alice.user.id), metadata=bearer(alice.access_token)
    )
    assert own.total_requests >= 1
    err = await refusal(
        analytics.GetUserUsage(
            analytics_pb2.GetUserUsageRequest(user_id=alice.user.id), metadata=bearer(bob.access_token)
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    bobs = await analytics.GetCurrentStats(analytics_pb2.GetCurrentStatsRequest(), metadata=bearer(bob.access_token))
    assert bobs.total_requests == 0  # Alice's call is not Bob's
    err = await refusal(analytics.ClearLogs(analytics_pb2.ClearLogsRequest(), metadata=bearer(bob.access_token)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_model_restricted_key_cannot_reach_the_default_model_through_rag(accounts: Accounts) -> None:
    rag = rag_pb2_grpc.RagServiceStub(accounts.channel)
    user = await accounts.new_user()
    key = (await accounts.new_key(user, allowed_models=["some-other-model"])).secret
    ns = unique("ns")
    await rag.IndexDocuments(
        rag_pb2.IndexDocumentsRequest(namespace=ns, documents=[rag_pb2.Document(content="Text.")]),
        metadata=bearer(key),
    )
    err = await refusal(
        rag.Query(rag_pb2.QueryRequest(namespace=ns, query="text", generate_response=True), metadata=bearer(key))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
