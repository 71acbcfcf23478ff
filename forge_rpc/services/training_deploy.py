"""TrainingService.DeployJob (seed 001's `POST /deploy/{job_id}`) and `auto_deploy`: a completed job's LoRA adapter
becomes an Ollama model that ModelsService lists and ChatService answers with at once.

The adapter is converted to GGUF in forge's process (numpy in a thread, adapters/gguf_export): as an adapter file
for the base model's GGUF (Modelfile `FROM <base>` + `ADAPTER <adapter>`), or merged into a copy of the base
(`merge`, and always for PiSSA jobs). Ollama, local or remote, gets the files as blobs and creates the model
(adapters/ollama_deploy.py); the catalog is then refreshed and the deployment kept with the job (Job.deployment,
and an ARTIFACT event)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forge.training.v1 import training_pb2 as pb

from ..adapters.gguf_export import QUANTIZATIONS, export_adapter, export_merged, load_adapter, resolve_base_gguf
from ..adapters.ollama_deploy import OllamaDeployer, model_name_problem, normalized_host, normalized_name
from ..adapters.runners import Workspace
from ..adapters.store.job_leases import Claim
from ..adapters.store.job_store import JobStore
from ..domain import FailedPrecondition, FieldViolation, ForgeError, InvalidArgument
from ..domain.identity import Principal
from ..domain.jobs import EventType, JobEvent, JobSnapshot, JobState
from .context import CallContext
from .job_owner import principal_from_json, training_job
from .training_convert import deployment_message

__all__ = ["DeployOptions", "DeploySettings", "DeploymentServicer", "JobDeployer"]

log = logging.getLogger("forge.training.deploy")


@dataclass(frozen=True, slots=True)
class DeploySettings:
    ollama_host: str
    """Where models are created unless a request names another server (OLLAMA_HOST)."""
    base_ggufs: Mapping[str, Path] = field(default_factory=dict)
    """Base model name → its GGUF, for bases forge cannot find a GGUF of by itself."""


@dataclass(frozen=True, slots=True)
class DeployOptions:
    model_name: str = ""
    ollama_host: str = ""
    merge: bool = False
    quantization: str = ""


def _default_name(job: JobSnapshot) -> str:
    if job.spec.get("output_model_name"):
        return str(job.spec["output_model_name"])
    project = re.sub(r"[^a-z0-9_.-]+", "-", str(job.spec.get("project_name", "")).lower()).strip("-._")[:80]
    return project or job.id


class JobDeployer:
    def __init__(
        self,
        store: JobStore,
        workspace: Workspace,
        settings: DeploySettings,
        ollama: OllamaDeployer,
        refresh_models: Callable[[], Awaitable[object]],
    ) -> None:
        self._store = store
        self._workspace = workspace
        self._settings = settings
        self._ollama = ollama
        self._refresh_models = refresh_models
        # Converting holds a dequantised weight matrix and a CPU core at a time: one conversion per replica.
        self._converting = asyncio.Lock()

    def _checked(self, job: JobSnapshot, options: DeployOptions) -> tuple[str, str, str]:
        bad: list[FieldViolation] = []
        name = options.model_name or _default_name(job)
        if (problem := model_name_problem(name)) is not None:
            bad.append(FieldViolation("model_name" if options.model_name else "config.output_model_name", problem))
        host = normalized_host(options.ollama_host or self._settings.ollama_host)
        if host is None:
            bad.append(FieldViolation("ollama_host", "must be an http(s) URL or host:port of an Ollama server"))
        quantization = (options.quantization or "q8_0").lower()
        if quantization not in QUANTIZATIONS:
            bad.append(FieldViolation("quantization", f"must be one of {', '.join(QUANTIZATIONS)} (default q8_0)"))
        if bad:
            raise InvalidArgument(bad)
        assert host is not None
        return normalized_name(name), host, quantization

    async def deploy(self, job: JobSnapshot, options: DeployOptions) -> dict[str, Any]:
        """Converts, creates the model and records the deployment with the job; returns what was recorded."""
        name, host, quantization = self._checked(job, options)
        if job.state is not JobState.COMPLETED:
            raise FailedPrecondition(f"job {job.id!r} is {job.state.value}; only a completed job can be deployed",
                                     "JOB_NOT_COMPLETED")  # fmt: skip
        adapter_path = str((job.status.get("artifacts") or {}).get("adapter_path", ""))
        if not adapter_path:
            raise FailedPrecondition(f"job {job.id!r} produced no adapter to deploy", "NO_ADAPTER")
        merge = options.merge or bool(job.spec.get("use_pissa"))
        out = self._workspace.job_dir(job.id) / "output" / "deploy"
        async with self._converting:
            base, gguf_path, modelfile = await asyncio.to_thread(
                self._convert, Path(adapter_path), str(job.spec.get("base_model", "")), out, merge, quantization
            )
        files, adapters = (
            ({gguf_path.name: gguf_path}, {}) if merge else ({base.name: base}, {gguf_path.name: gguf_path})
        )
        created = await self._ollama.create(host, name, files, adapters)
        await self._refresh_models()
        how = "merged model" if merge else "base GGUF + LoRA adapter"
        stored = {
            "success": True,
            "model_name": name,
            "gguf_path": str(gguf_path),
            "modelfile": modelfile,
            "ollama_host": host,
            "deployed_at": datetime.now(UTC).isoformat(),
            "message": f"created {name} on {host} from the {how} ({quantization})",
            "merged": merge,
            "quantization": quantization,
            "files": created.files,
            "adapters": created.adapters,
        }
        data = {"kind": "deployment", "model_name": name, "ollama_host": host}
        note = f"deployed: {stored['message']}"
        event = JobEvent(EventType.ARTIFACT, JobState.COMPLETED, note, 100.0, artifact=str(gguf_path), data=data)
        await self._store.attach_result(job.id, "deployment", stored, [event])
        return stored

    def _convert(
        self, adapter_dir: Path, base_model: str, out: Path, merge: bool, quantization: str
    ) -> tuple[Path, Path, str]:
        adapter = load_adapter(adapter_dir)
        base = resolve_base_gguf(base_model, self._settings.base_ggufs)
        if merge:
            path = export_merged(base, adapter, out / f"model-{quantization}.gguf", quantization)
            modelfile = f"FROM {path}\n"
        else:
            path = export_adapter(base, adapter, out / f"adapter-{quantization}.gguf", quantization)
            modelfile = f"FROM {base}\nADAPTER {path}\n"
        (out / "Modelfile").write_text(modelfile, encoding="utf-8")
        return base, path, modelfile

    async def auto_deploy(self, claim: Claim, may_deploy: Callable[[Principal], None]) -> None:
        """Deploys a just-completed job created with `auto_deploy`, as its creator (who must be allowed to
        DeployJob). A failure is recorded with the job (an ERROR event, Job.deployment.success false); the job
        stays completed."""
        if not claim.job.spec.get("auto_deploy"):
            return
        job = await self._store.get(claim.id)
        if job is None or job.state is not JobState.COMPLETED:
            return
        try:
            may_deploy(principal_from_json(claim.principal))
            await self.deploy(job, DeployOptions())
            return
        except ForgeError as exc:
            why = exc.message
        except Exception as exc:  # a conversion bug must not take the worker down: the job is done either way
            log.exception("auto_deploy of %s failed", job.id)
            why = f"{type(exc).__name__}: {exc}"
        stored = {
            "success": False,
            "message": f"auto_deploy failed: {why}",
            "deployed_at": datetime.now(UTC).isoformat(),
        }
        event = JobEvent(EventType.ERROR, JobState.COMPLETED, str(stored["message"]), 100.0)
        await self._store.attach_result(job.id, "deployment", stored, [event])


class DeploymentServicer:
    def __init__(self, store: JobStore, deployer: JobDeployer) -> None:
        self._store = store
        self._deployer = deployer

    async def DeployJob(self, request: pb.DeployJobRequest, context: CallContext) -> pb.Deployment:
        job = await training_job(self._store, request.job_id)
        options = DeployOptions(request.model_name, request.ollama_host, request.merge, request.quantization)
        return deployment_message(job.id, await self._deployer.deploy(job, options))
