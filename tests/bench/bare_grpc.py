"""A bare grpc.aio server with forge's chat contract and nothing behind it: StreamChatCompletion paces tokens
itself as the fake upstream would (the request's model carries `tokens` and `gap_ms` the same way). What it burns
per 1,000 streamed tokens is the floor grpc.aio sets on these machines, measured beside forge in the same run.

    python -m tests.bench.bare_grpc PORT      (prints "ready" once it serves)
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import grpc
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.type.v1 import usage_pb2

from tests.fakes.scenario import parse_model


class BareChat(chat_pb2_grpc.ChatServiceServicer):
    async def StreamChatCompletion(
        self, request: chat_pb2.StreamChatCompletionRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        sc = parse_model(request.chat.model)
        for i in range(sc.tokens):
            if sc.gap_ms and i:
                await asyncio.sleep(sc.gap_ms / 1000)
            running = usage_pb2.Usage(completion_tokens=i + 1, total_tokens=i + 1)
            yield chat_pb2.ChatEvent(sequence=i, delta=chat_pb2.ContentDelta(content=f"tok{i} "), running_usage=running)
        yield chat_pb2.ChatEvent(sequence=sc.tokens, finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP))


async def main(port: int) -> None:
    server = grpc.aio.server()
    # The other chat RPCs stay the generated base class's UNIMPLEMENTED: the benchmark streams only.
    chat_pb2_grpc.add_ChatServiceServicer_to_server(BareChat(), server)  # type: ignore[abstract]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
