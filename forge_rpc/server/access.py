"""Who may call what: one table with an entry for every RPC of every forge service (a unit test fails when an RPC
has none, and an RPC missing at run time is treated as admin-only).

Levels:
- PUBLIC: anyone, no credentials — health, Register, Login, Refresh. A valid token still identifies the caller;
  an invalid one is ignored here (a client holding an expired access token must still be able to refresh).
- AUTHENTICATED: any user. What they see is then the servicer's business: their own namespaces, usage, logs,
  jobs and keys; admins see everyone's.
- ADMIN: role admin. Everything that changes what *every* user gets or that concerns the server itself: user
  administration, clearing analytics and the cache, warming the cache, model pulls/deletes and repository
  writes (including deploying a fine-tune as a model), routing rules, circuit breakers, provider keys, the
  configuration.

Scopes (auth.proto `ApiKey.scopes`) narrow what an API key may do within its user's rights: a call by API key
needs one of its entry's scopes ("models:write" and "rag:write" include "models" and "rag"). A key with no scopes
or "*" has all of its user's rights, as a login session has. Entries without scopes (GetCurrentUser, Logout)
accept any key. Managing API keys needs "*", so a narrowed key cannot mint a wider one.

`spends_model`: the RPC generates with a model, and an empty `model` means the default model — a key limited to
some models (`allowed_models`) is then checked against the default. Any RPC whose request (or a sub-message of
it) names a `model` is checked against `allowed_models` (request_models.py).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf.descriptor import ServiceDescriptor

from ..domain import PermissionDenied, Unauthenticated
from ..domain.identity import Principal

__all__ = ["ACCESS", "Access", "Level", "access_for", "authorize", "missing_entries"]


class Level(enum.Enum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Access:
    level: Level
    scopes: frozenset[str] = frozenset()
    """An API key needs one of these; empty accepts any key."""
    spends_model: bool = False


def _public() -> Access:
    return Access(Level.PUBLIC)


def _user(*scopes: str, spends_model: bool = False) -> Access:
    return Access(Level.AUTHENTICATED, frozenset(scopes), spends_model)


def _admin(scope: str = "admin") -> Access:
    return Access(Level.ADMIN, frozenset({scope}))


_TABLE: dict[str, dict[str, Access]] = {
    "forge.analytics.v1.AnalyticsService": {
        "RecordUsage": _user("analytics"),  # another user's usage: the servicer requires admin
        "GetUserUsage": _user("analytics"),
        "GetCurrentStats": _user("analytics"),
        "GetStatsHistory": _user("analytics"),
        "ListRequestLogs": _user("analytics"),
        "ListModelStats": _user("analytics"),
        "ListTaskHistory": _user("analytics"),
        "GetDataSummary": _user("analytics"),
        "ClearMetrics": _admin(),
        "ClearLogs": _admin(),
        "ClearAllData": _admin(),
        "GetMetrics": _user("analytics"),
        "WatchMetrics": _user("analytics"),
        "GetSystemStats": _user("analytics"),
        "GetCacheStats": _user("analytics"),
        "ListCacheKeys": _admin(),  # keys are hashes of other users' requests
        "ClearCache": _admin(),
        "WarmCache": _admin(),  # runs generations whose answers every caller then receives
    },
    "forge.auth.v1.AuthService": {
        "Register": _public(),  # closed registration: the servicer requires an admin caller
        "Login": _public(),
        "Refresh": _public(),
        "Logout": _user(),
        "GetCurrentUser": _user(),
        "ListUsers": _admin(),
        "UpdateUser": _admin(),
        "CreateApiKey": _user("*"),
        "GetApiKey": _user("*"),
        "ListApiKeys": _user("*"),
        "RevokeApiKey": _user("*"),
    },
    "forge.chat.v1.ChatService": {
        "CreateChatCompletion": _user("chat", spends_model=True),
        "StreamChatCompletion": _user("chat", spends_model=True),
        "BatchCreateChatCompletions": _user("chat", spends_model=True),
    },
    "forge.models.v1.ModelsService": {
        "ListModels": _user("models", "chat"),
        "GetModel": _user("models", "chat"),
        "PullModel": _admin("models:write"),
        "DeleteModel": _admin("models:write"),
        "SearchModelLibrary": _user("models"),
        "ListRepositoryModels": _user("models"),
        "GetRepositoryModel": _user("models"),
        "CreateRepositoryModel": _admin("models:write"),
        "UpdateRepositoryModel": _admin("models:write"),  # sets the default model for everyone
        "SyncRepository": _admin("models:write"),
    },
    "forge.rag.v1.RagService": {
        "CreateNamespace": _user("rag:write"),
        "GetNamespace": _user("rag"),
        "ListNamespaces": _user("rag"),
        "DeleteNamespace": _user("rag:write"),
        "IndexDocuments": _user("rag:write"),
        "ImportDocuments": _user("rag:write"),
        "GetDocument": _user("rag"),
        "ListDocuments": _user("rag"),
        "DeleteDocument": _user("rag:write"),
        "Query": _user("rag"),
        "CreateEmbeddings": _user("rag", "chat"),  # also OpenAI's /v1/embeddings, which chat clients call
    },
    "forge.routing.v1.RoutingService": {
        "GetHealth": _public(),
        "GetDetailedHealth": _user("models"),
        "ListProviders": _user("models"),
        "CheckProviderHealth": _user("models"),
        "ListServices": _user("models"),
        "GetService": _user("models"),
        "WatchServiceStatus": _user("models"),
        "ListRoutingRules": _user("models"),
        "GetRoutingRule": _user("models"),
        "CreateRoutingRule": _admin(),
        "UpdateRoutingRule": _admin(),
        "DeleteRoutingRule": _admin(),
        "ResolveRoute": _user("models", "chat"),
        "ExecuteTask": _user("chat"),
        "ListCircuitBreakers": _user("models"),
        "ResetCircuitBreaker": _admin(),
        "GetProviderKeyStatus": _admin(),  # the server's credentials
        "TestProviderKey": _admin(),  # spends the server's credentials, and would make forge a key oracle
        "UpdateProviderKey": _admin(),
        "GetConfig": _admin(),
        "ReloadConfig": _admin(),
    },
    "forge.training.v1.TrainingService": {
        "CreateJob": _user("training"),
        "GetJob": _user("training"),
        "ListJobs": _user("training"),
        "CancelJob": _user("training"),
        "PauseJob": _user("training"),
        "ResumeJob": _user("training"),
        "WatchJob": _user("training"),
        "ListJobEvents": _user("training"),
        "ValidateJob": _user("training"),
        "DeployJob": _admin("models:write"),  # creates a model every user sees
        "CheckRetrain": _user("training"),
        "Retrain": _user("training"),
        # A task runs a chat, RAG or routed request: the worker checks the wrapped RPC's own entry for the task's
        # owner when it runs it ("tasks run through the same policies as the RPC they wrap").
        "CreateTask": _user("training", "chat", "rag"),
        "GetTask": _user("training", "chat", "rag"),
        "ListTasks": _user("training", "chat", "rag"),
        "CancelTask": _user("training", "chat", "rag"),
        "GetTaskResult": _user("training", "chat", "rag"),
        "WatchTask": _user("training", "chat", "rag"),
    },
}

ACCESS: Mapping[str, Access] = {
    f"/{service}/{method}": access for service, methods in _TABLE.items() for method, access in methods.items()
}
"""`/package.Service/Method` → its access entry."""

_UNLISTED = _admin()


def access_for(full_name: str) -> Access:
    """The entry of `/package.Service/Method`; an RPC missing from the table is admin-only (deny by default)."""
    return ACCESS.get(full_name, _UNLISTED)


def missing_entries(services: Iterable[ServiceDescriptor], table: Mapping[str, Access] = ACCESS) -> list[str]:
    """RPCs of `services` that have no entry (a test keeps this empty)."""
    return [f"/{s.full_name}/{m.name}" for s in services for m in s.methods if f"/{s.full_name}/{m.name}" not in table]


def authorize(who: Principal, access: Access, method: str) -> None:
    """Raises UNAUTHENTICATED (no caller where one is needed) or PERMISSION_DENIED (role or scope lacking)."""
    if access.level is Level.PUBLIC:
        return
    if not who.authenticated:
        raise Unauthenticated(
            f"{method} needs credentials: send `authorization: Bearer <access token or API key>`",
            "CREDENTIALS_MISSING",
        )
    if access.level is Level.ADMIN and not who.is_admin:
        raise PermissionDenied(f"{method} needs the admin role", "ADMIN_ONLY")
    if who.api_key_id is not None and access.scopes and not any(who.has_scope(s) for s in access.scopes):
        needed = " or ".join(sorted(access.scopes))
        raise PermissionDenied(f"{method} needs an API key with scope {needed}", "SCOPE_MISSING")
