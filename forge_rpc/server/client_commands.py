"""`forge chat | models | health | jobs`: thin gRPC clients with terminal output (streamed tokens, progress bars)."""

from __future__ import annotations

import argparse
import sys

import grpc
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.models.v1 import models_pb2, models_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .client_jobs import run_jobs
from .client_progress import ProgressBar
from .services import SERVICES

__all__ = ["run_client_command"]


async def run_client_command(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.address) as channel:
        try:
            if args.command == "chat":
                return await _chat(channel, args)
            if args.command == "models":
                return await _models(channel, args)
            if args.command == "jobs":
                return await run_jobs(channel, args)
            return await _health(channel)
        except grpc.aio.AioRpcError as err:
            print(f"forge: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1


async def _chat(channel: grpc.aio.Channel, args: argparse.Namespace) -> int:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    messages = [chat_pb2.Message(role="system", content=args.system)] if args.system else []
    messages.append(chat_pb2.Message(role="user", content=args.prompt))
    chat = chat_pb2.ChatRequest(model=args.model, messages=messages)
    if args.temperature is not None:
        chat.temperature = args.temperature
    if args.max_tokens is not None:
        chat.max_tokens = args.max_tokens
    usage = None
    async for event in stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=chat)):
        kind = event.WhichOneof("event")
        if kind == "delta":
            sys.stdout.write(event.delta.content)
            sys.stdout.flush()
        elif kind == "usage":
            usage = event.usage
        elif kind == "error":
            print(f"\nforge: {event.error.reason}: {event.error.message}", file=sys.stderr)
        elif kind == "finish":
            sys.stdout.write("\n")
            if usage is not None:
                print(
                    f"[{event.finish.model} via {event.finish.provider}: {usage.prompt_tokens} prompt + "
                    f"{usage.completion_tokens} completion tokens]",
                    file=sys.stderr,
                )
    return 0


async def _models(channel: grpc.aio.Channel, args: argparse.Namespace) -> int:
    stub = models_pb2_grpc.ModelsServiceStub(channel)
    if args.action == "list":
        token = ""
        rows: list[models_pb2.Model] = []
        while True:
            page = await stub.ListModels(models_pb2.ListModelsRequest(provider=args.provider, page_token=token))
            rows.extend(page.models)
            token = page.next_page_token
            if not token:
                break
        width = max([len(m.name) for m in rows] + [5])
        print(f"{'NAME':<{width}}  {'PROVIDER':<10}  {'SIZE':>9}  DEFAULT")
        for m in rows:
            print(f"{m.name:<{width}}  {m.provider:<10}  {m.size:>9}  {'*' if m.is_default else ''}")
        return 0
    if args.action == "pull":
        bar = ProgressBar()
        async for p in stub.PullModel(models_pb2.PullModelRequest(model=args.name)):
            bar.show(p.status, p.completed, p.total)
        bar.close(f"pulled {args.name}")
        return 0
    reply = await stub.DeleteModel(models_pb2.DeleteModelRequest(name=args.name))
    print(reply.message)
    return 0


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    worst = 0
    for name in ["", *SERVICES]:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        print(f"{name or '(server)':<40} {status}")
        if name == "" and reply.status != health_pb2.HealthCheckResponse.SERVING:
            worst = 1
    return worst
