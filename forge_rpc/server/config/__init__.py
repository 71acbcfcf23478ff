"""Configuration: one `*Config` per concern, built once from the YAML file and the environment, then passed
down. No other module reads `os.environ`.

The `model_list` section is LiteLLM proxy's format unchanged (`model_name`, `litellm_params.model/api_base/
api_key/rpm/tpm`, `os.environ/NAME` references), so a LiteLLM user can bring their config file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .auth import AuthConfig, parse_auth
from .errors import ConfigError
from .limits import LimitsConfig, parse_limits
from .retrain import RetrainConfig, parse_retrain
from .router import RouterConfig, parse_router
from .routing import RoutingConfig, parse_routing
from .training import TrainingConfig, parse_training
from .usage import UsageConfig, parse_usage

__all__ = [
    "AuthConfig",
    "ConfigError",
    "DeploymentConfig",
    "ForgeConfig",
    "GrpcConfig",
    "HttpConfig",
    "LimitsConfig",
    "ProvidersConfig",
    "RetrainConfig",
    "RouterConfig",
    "RoutingConfig",
    "StorageConfig",
    "TrainingConfig",
    "UsageConfig",
    "load_config",
]

MiB = 1024 * 1024

# Env keys that turn on a provider with a wildcard route (`openai/*` → any OpenAI model), as LiteLLM does.
ENV_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("OPENAI_API_KEY", "openai"),
    ("DEEPSEEK_API_KEY", "deepseek"),
    ("OPENROUTER_API_KEY", "openrouter"),
    ("GROQ_API_KEY", "groq"),
    ("MISTRAL_API_KEY", "mistral"),
    ("GEMINI_API_KEY", "gemini"),
    ("ANTHROPIC_API_KEY", "anthropic"),
)


@dataclass(frozen=True, slots=True)
class GrpcConfig:
    host: str = "0.0.0.0"
    """Interface the gRPC server binds."""
    port: int = 50051
    """gRPC port (`--grpc-port`, `FORGE_GRPC_PORT`); 0 picks a free one."""
    max_message_bytes: int = 16 * MiB
    """Largest request or response message."""
    shutdown_grace_s: float = 10.0
    """On SIGTERM/SIGINT, how long in-flight calls may finish before they are cancelled."""


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str = "0.0.0.0"
    """Interface the HTTP edge binds."""
    port: int = 8000
    """HTTP port (`--http-port`, `FORGE_HTTP_PORT`)."""
    enabled: bool = True
    """Serve the HTTP edge in the same process (`--no-http` turns it off)."""


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    """One `model_list` entry."""

    model_name: str
    model: str
    """LiteLLM-style upstream id, e.g. `openai/gpt-4o-mini`, `ollama/llama3.2`, `gemini/gemini-2.0-flash`."""
    api_base: str | None = None
    api_key: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    weight: float | None = None
    """Share of a model group's traffic under simple-shuffle (LiteLLM's `litellm_params.weight`)."""
    adapter: str | None = None
    """forge extension: force "openai", "ollama" or "litellm" instead of choosing by the model prefix."""
    env_var: str = ""
    """Where the key came from, named in errors (never the key itself)."""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProvidersConfig:
    deployments: tuple[DeploymentConfig, ...] = ()
    ollama_host: str = "http://localhost:11434"
    """Ollama's address (`OLLAMA_HOST`); its models are discovered when it answers."""
    discover_ollama: bool = True
    default_model: str | None = None
    """Model used when a request names none (`FORGE_DEFAULT_MODEL`); else the first configured one."""
    discovery_ttl_s: float = 30.0
    """How long a discovered model list is reused before it is fetched again."""
    local_model: bool = True
    """Serve the in-process model (`local/smollm2-135m-instruct`) when the `local` extra is installed
    (`FORGE_LOCAL_MODEL=0` turns it off); it is the default model only when nothing else is configured or found."""


@dataclass(frozen=True, slots=True)
class StorageConfig:
    database_url: str | None = None
    """External PostgreSQL with pgvector (`FORGE_DATABASE_URL`); None runs the embedded server in data_dir/pg."""
    embedded_port: int | None = None
    """127.0.0.1 port of the embedded server (`FORGE_EMBEDDED_PG_PORT`); None picks a free one at each start."""
    pool_min_size: int = 1
    pool_max_size: int = 10
    """Connections per replica (`FORGE_DB_POOL_SIZE`); replicas × this must stay under max_connections (100)."""
    pool_timeout_s: float = 10.0
    """How long a caller waits for a free connection."""
    ledger_flush_interval_s: float = 0.2
    """How often buffered usage rows are written (`FORGE_LEDGER_FLUSH_INTERVAL_S`); shutdown always writes the
    rest. Longer means fewer, larger INSERTs; what a crash (kill -9) can lose is at most this window."""
    redis_url: str | None = None
    """Redis shared by replicas (`FORGE_REDIS_URL`): rate limits, budgets, cache, breakers, pub/sub. None keeps
    that state in process (one replica)."""


@dataclass(frozen=True, slots=True)
class ForgeConfig:
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    providers: ProvidersConfig = field(default_factory=ProvidersConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    data_dir: Path = field(default_factory=lambda: Path("~/.local/share/forge").expanduser())
    log_level: str = "INFO"
    version: str = "0.1.0"
    status_watch_interval_s: float = 5.0
    """How often WatchServiceStatus (and /ws `service_status`) re-probes providers."""
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    """LiteLLM's `router_settings` (load balancing, retries, fallbacks, cooldowns)."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    """The retrain monitor: thresholds, critical paths and where projects may lie."""
    usage: UsageConfig = field(default_factory=UsageConfig)


_GRPC, _HTTP, _PROVIDERS = GrpcConfig(), HttpConfig(), ProvidersConfig()


def _env_ref(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str) and value.startswith("os.environ/"):
        name = value.removeprefix("os.environ/")
        if name not in env:
            raise ConfigError(f"{where} refers to environment variable {name}, which is not set")
        return env[name]
    return value


def _deployments(raw: Any, env: Mapping[str, str]) -> list[DeploymentConfig]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("model_list must be a list of {model_name, litellm_params} entries")
    out = []
    for i, entry in enumerate(raw):
        where = f"model_list[{i}]"
        if not isinstance(entry, dict) or "model_name" not in entry:
            raise ConfigError(f"{where} needs model_name")
        params = entry.get("litellm_params") or {}
        if "model" not in params:
            raise ConfigError(f"{where}.litellm_params needs model")
        key_raw = params.get("api_key")
        env_var = (
            key_raw.removeprefix("os.environ/")
            if isinstance(key_raw, str) and key_raw.startswith("os.environ/")
            else ""
        )
        out.append(
            DeploymentConfig(
                model_name=str(entry["model_name"]),
                model=str(_env_ref(params["model"], env, f"{where}.litellm_params.model")),
                api_base=_env_ref(params.get("api_base"), env, f"{where}.litellm_params.api_base"),
                api_key=_env_ref(key_raw, env, f"{where}.litellm_params.api_key"),
                rpm=params.get("rpm"),
                tpm=params.get("tpm"),
                weight=float(params["weight"]) if params.get("weight") is not None else None,
                adapter=params.get("forge_adapter") or entry.get("adapter"),
                env_var=env_var,
                info=dict(entry.get("model_info") or {}),
            )
        )
    return out


def _env_deployments(env: Mapping[str, str], configured: list[DeploymentConfig]) -> list[DeploymentConfig]:
    taken = {d.model_name for d in configured}
    out = []
    for var, kind in ENV_PROVIDERS:
        name = f"{kind}/*"
        if env.get(var) and name not in taken:
            base = env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_BASE") if kind == "openai" else None
            out.append(DeploymentConfig(name, f"{kind}/*", api_base=base, api_key=env[var], env_var=var))
    return out


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any) -> ForgeConfig:
    """File, then environment, then explicit overrides (CLI flags), each winning over the one before."""
    env = os.environ if env is None else env
    path = path or (Path(env["FORGE_CONFIG"]) if env.get("FORGE_CONFIG") else None)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must be a mapping")
        data = loaded
    g, h, p = data.get("grpc") or {}, data.get("http") or {}, data.get("providers") or {}
    deployments = _deployments(data.get("model_list"), env)
    deployments += _env_deployments(env, deployments)
    grpc_cfg = GrpcConfig(
        host=str(g.get("host", _GRPC.host)),
        port=_int(env, "FORGE_GRPC_PORT", int(g.get("port", _GRPC.port))),
        max_message_bytes=int(g.get("max_message_bytes", _GRPC.max_message_bytes)),
        shutdown_grace_s=float(env.get("FORGE_SHUTDOWN_GRACE_S") or g.get("shutdown_grace_s", 10.0)),
    )
    http_cfg = HttpConfig(
        host=str(h.get("host", _HTTP.host)),
        port=_int(env, "FORGE_HTTP_PORT", int(h.get("port", _HTTP.port))),
    )
    providers_cfg = ProvidersConfig(
        deployments=tuple(deployments),
        ollama_host=_ollama_host(env.get("OLLAMA_HOST") or p.get("ollama_host") or _PROVIDERS.ollama_host),
        discover_ollama=_bool(env.get("FORGE_DISCOVER_OLLAMA"), bool(p.get("discover_ollama", True))),
        default_model=env.get("FORGE_DEFAULT_MODEL") or p.get("default_model"),
        discovery_ttl_s=float(p.get("discovery_ttl_s", _PROVIDERS.discovery_ttl_s)),
        local_model=_bool(env.get("FORGE_LOCAL_MODEL"), bool(p.get("local_model", _PROVIDERS.local_model))),
    )
    s = data.get("storage") or {}
    embedded_port = env.get("FORGE_EMBEDDED_PG_PORT") or s.get("embedded_port")
    storage_cfg = StorageConfig(
        database_url=env.get("FORGE_DATABASE_URL") or s.get("database_url"),
        embedded_port=int(embedded_port) if embedded_port else None,
        pool_max_size=_int(env, "FORGE_DB_POOL_SIZE", int(s.get("pool_max_size", 10))),
        ledger_flush_interval_s=float(
            env.get("FORGE_LEDGER_FLUSH_INTERVAL_S") or s.get("ledger_flush_interval_s") or 0.2
        ),
        redis_url=env.get("FORGE_REDIS_URL") or s.get("redis_url") or (data.get("redis") or {}).get("url"),
    )
    cfg = ForgeConfig(
        storage=storage_cfg,
        grpc=grpc_cfg,
        http=http_cfg,
        providers=providers_cfg,
        data_dir=Path(env.get("FORGE_DATA_DIR") or data.get("data_dir") or "~/.local/share/forge").expanduser(),
        log_level=str(env.get("FORGE_LOG_LEVEL") or data.get("log_level") or "INFO").upper(),
        auth=parse_auth(_section(data, "auth"), env),
        limits=parse_limits(_section(data, "limits"), env),
        routing=parse_routing(_section(data, "routing"), env, source=path),
        router=parse_router(_section(data, "router_settings"), env),
        training=parse_training(_section(data, "training"), env),
        retrain=parse_retrain(_section(data, "retrain"), env),
        usage=parse_usage(_section(data, "usage"), env, data.get("model_list")),
    )
    return _apply(cfg, overrides)


def _apply(cfg: ForgeConfig, overrides: Mapping[str, Any]) -> ForgeConfig:
    o = {k: v for k, v in overrides.items() if v is not None}
    if "grpc_port" in o:
        cfg = replace(cfg, grpc=replace(cfg.grpc, port=int(o["grpc_port"])))
    if "grpc_host" in o:
        cfg = replace(cfg, grpc=replace(cfg.grpc, host=str(o["grpc_host"])))
    if "http_host" in o:
        cfg = replace(cfg, http=replace(cfg.http, host=str(o["http_host"])))
    if "http_port" in o:
        cfg = replace(cfg, http=replace(cfg.http, port=int(o["http_port"])))
    if "http_enabled" in o:
        cfg = replace(cfg, http=replace(cfg.http, enabled=bool(o["http_enabled"])))
    if "data_dir" in o:
        cfg = replace(cfg, data_dir=Path(o["data_dir"]).expanduser())
    if "shutdown_grace_s" in o:
        cfg = replace(cfg, grpc=replace(cfg.grpc, shutdown_grace_s=float(o["shutdown_grace_s"])))
    return cfg


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    raw = data.get(name) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config section {name} must be a mapping")
    return raw


def _bool(raw: str | None, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _ollama_host(raw: str) -> str:
    # OLLAMA_HOST is often given as host:port without a scheme (that is what `ollama serve` accepts).
    return raw if "://" in raw else f"http://{raw}"
