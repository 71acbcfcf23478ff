"""`forge jobs create | list | watch | cancel | pause | resume`: fine-tuning jobs from the terminal, with a progress
bar that follows WatchJob."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import grpc
from forge.training.v1 import training_pb2 as pb
from forge.training.v1 import training_pb2_grpc

from .client_progress import ProgressBar

__all__ = ["add_job_commands", "run_jobs"]

_DONE = {pb.JOB_STATE_COMPLETED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}


def add_job_commands(jobs: argparse.ArgumentParser) -> None:
    sub = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="queue a fine-tuning job")
    create.add_argument("--base-model", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="Hugging Face id")
    create.add_argument("--project", default="", help="project name (the deployed model is <project>:latest)")
    data = create.add_mutually_exclusive_group()
    data.add_argument("--dataset", help="JSONL file on the server (chat messages or prompt/completion per line)")
    data.add_argument("--upload", type=Path, help="JSONL file here, sent with the job")
    data.add_argument(
        "--project-path", default="", help="without a dataset: the server-side repository to extract one from"
    )
    create.add_argument("--eval-dataset", default="", help="held-out JSONL file on the server")
    create.add_argument("--epochs", type=int, default=0)
    create.add_argument("--learning-rate", type=float, default=0.0)
    create.add_argument("--rank", type=int, default=0, help="LoRA rank")
    create.add_argument("--max-steps", type=int, default=0)
    create.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps")
    create.add_argument("--runner", default="", help="local or ray")
    create.add_argument("--watch", action="store_true", help="follow the job with a progress bar")
    lst = sub.add_parser("list", help="list jobs, newest first")
    lst.add_argument("--state", default="", help="only jobs in this state (queued, training, completed…)")
    lst.add_argument("--all", action="store_true", help="everyone's jobs (admins)")
    watch = sub.add_parser("watch", help="follow a job until it finishes")
    watch.add_argument("job_id")
    watch.add_argument("--logs", action="store_true", help="also print the trainer's output")
    for name, text in (("cancel", "stop a job"), ("pause", "pause a job at its next checkpoint"), ("resume", "resume")):
        p = sub.add_parser(name, help=text)
        p.add_argument("job_id")


def _examples(path: Path) -> list[dict[str, Any]]:
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise SystemExit(f"forge: {path}:{number}: not valid JSON ({exc})") from None
    return out


async def run_jobs(channel: grpc.aio.Channel, args: argparse.Namespace) -> int:
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    if args.action == "create":
        return await _create(stub, args)
    if args.action == "list":
        return await _list(stub, args)
    if args.action == "watch":
        return await _watch(stub, args.job_id, args.logs)
    if args.action == "cancel":
        job = await stub.CancelJob(pb.CancelJobRequest(job_id=args.job_id, reason="cancelled from the CLI"))
    elif args.action == "pause":
        job = await stub.PauseJob(pb.PauseJobRequest(job_id=args.job_id))
    else:
        job = await stub.ResumeJob(pb.ResumeJobRequest(job_id=args.job_id))
    print(f"{job.job_id}: {job.status}{' (pause requested)' if job.pause_requested else ''}")
    return 0


async def _create(stub: training_pb2_grpc.TrainingServiceAsyncStub, args: argparse.Namespace) -> int:
    config = pb.FineTuneConfig(
        base_model=args.base_model,
        project_name=args.project,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        lora_rank=args.rank,
        max_steps=args.max_steps,
        save_steps=args.save_steps,
        runner=args.runner,
    )
    if args.upload is not None:
        for example in _examples(args.upload):
            config.dataset.examples.add().update(example)
    elif args.dataset:
        config.dataset.path = args.dataset
    else:
        config.project_path = args.project_path  # no dataset: extracted from this repository (default ".")
    config.dataset.eval_path = args.eval_dataset
    job = await stub.CreateJob(pb.CreateJobRequest(config=config))
    print(job.job_id)
    return await _watch(stub, job.job_id, False) if args.watch else 0


async def _list(stub: training_pb2_grpc.TrainingServiceAsyncStub, args: argparse.Namespace) -> int:
    state = pb.JobState.Value(f"JOB_STATE_{args.state.upper()}") if args.state else pb.JOB_STATE_UNSPECIFIED
    token, rows = "", list[pb.Job]()
    while True:
        page = await stub.ListJobs(pb.ListJobsRequest(state=state, user_id="*" if args.all else "", page_token=token))
        rows.extend(page.jobs)
        token = page.next_page_token
        if not token:
            break
    print(f"{'JOB':<30} {'STATUS':<11} {'PROGRESS':>8} {'STEP':>11} {'LOSS':>8}  PROJECT")
    for j in rows:
        step = f"{j.current_step}/{j.total_steps}" if j.total_steps else str(j.current_step)
        loss = f"{j.loss:.4f}" if j.HasField("loss") else "-"
        print(f"{j.job_id:<30} {j.status:<11} {j.progress:>7.1f}% {step:>11} {loss:>8}  {j.config.project_name}")
    return 0


def _line(job: pb.Job) -> str:
    parts = [job.status]
    if job.total_steps:
        parts.append(f"step {job.current_step}/{job.total_steps}")
    if job.HasField("loss"):
        parts.append(f"loss {job.loss:.4f}")
    if job.HasField("eta_sec"):
        parts.append(f"ETA {job.eta_sec // 60}:{job.eta_sec % 60:02d}")
    return "  ".join(parts)


async def _watch(stub: training_pb2_grpc.TrainingServiceAsyncStub, job_id: str, logs: bool) -> int:
    bar = ProgressBar(label_width=48)
    job = pb.Job()
    async for update in stub.WatchJob(pb.WatchJobRequest(job_id=job_id, include_logs=logs)):
        job = update.job
        if logs and update.event.type == pb.JOB_EVENT_TYPE_LOG:
            bar.interrupt(update.event.message)
        bar.show(_line(job), int(job.progress * 10), 1000)
    if job.state == pb.JOB_STATE_COMPLETED:
        bar.close(f"{job_id} completed" + (f": {job.artifacts.adapter_path}" if job.artifacts.adapter_path else ""))
        return 0
    bar.close(f"{job_id} {job.status}" + (f": {job.error.message}" if job.error.message else ""))
    return 1 if job.state in _DONE else 0
