"""The table of wrapped methods, built from the service descriptors: one entry per RPC of every forge service.

Each servicer method is wrapped once by the pipeline; RPCs a servicer does not implement get a handler that
answers UNIMPLEMENTED with a clear message. The gRPC server registers this table, and the edge's in-process
invoker calls the same entries — so both transports pass exactly the same policies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from ..domain import Unimplemented
from ..services.context import CallContext
from ..services.inflight import InFlight
from .pipeline import StreamHandler, UnaryHandler, wrap_stream, wrap_unary
from .policy import CallInfo, Policy

__all__ = ["Method", "MethodTable", "build_method_table", "grpc_handlers"]


@dataclass(frozen=True, slots=True)
class Method:
    full_name: str
    """`/package.Service/Method`, the gRPC path."""
    descriptor: MethodDescriptor
    request_type: type[Any]
    response_type: type[Any]
    handler: UnaryHandler | StreamHandler
    implemented: bool

    @property
    def server_streaming(self) -> bool:
        return bool(self.descriptor.server_streaming)

    @property
    def client_streaming(self) -> bool:
        return bool(self.descriptor.client_streaming)


MethodTable = dict[str, Method]


def _unimplemented(service: ServiceDescriptor, method: MethodDescriptor, planned_in: str) -> Any:
    err = Unimplemented(f"{service.full_name}.{method.name}", planned_in)

    if method.server_streaming:

        async def stream(request: Any, context: CallContext) -> AsyncIterator[Any]:
            raise err
            yield  # type: ignore[unreachable]  # makes this an async generator

        return stream

    async def unary(request: Any, context: CallContext) -> Any:
        raise err

    return unary


def build_method_table(
    services: Mapping[ServiceDescriptor, Sequence[object]],
    planned_in: Mapping[str, str],
    policies: Sequence[Policy] = (),
    inflight: InFlight | None = None,
) -> MethodTable:
    """`services` maps each service to the servicers that implement parts of it (the first that has a method
    serves it), so one service's RPCs can live in several small servicers."""
    table: MethodTable = {}
    counter = inflight if inflight is not None else InFlight()
    for service, servicers in services.items():
        for method in service.methods:
            impl = next((getattr(s, method.name) for s in servicers if hasattr(s, method.name)), None)
            fn = impl or _unimplemented(service, method, planned_in.get(service.full_name, "a later release"))
            full = f"/{service.full_name}/{method.name}"
            call = CallInfo(full, service.full_name, method.name, method.server_streaming, method.client_streaming)
            wrapped = (
                wrap_stream(call, fn, policies, counter)
                if method.server_streaming
                else wrap_unary(call, fn, policies, counter)
            )
            table[full] = Method(
                full_name=full,
                descriptor=method,
                request_type=message_factory.GetMessageClass(method.input_type),
                response_type=message_factory.GetMessageClass(method.output_type),
                handler=wrapped,
                implemented=impl is not None,
            )
    return table


def grpc_handlers(table: MethodTable) -> list[grpc.GenericRpcHandler]:
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for m in table.values():
        service = m.descriptor.containing_service.full_name
        kwargs: dict[str, Any] = {
            "request_deserializer": m.request_type.FromString,
            "response_serializer": m.response_type.SerializeToString,
        }
        if m.client_streaming and m.server_streaming:
            h = grpc.stream_stream_rpc_method_handler(m.handler, **kwargs)
        elif m.client_streaming:
            h = grpc.stream_unary_rpc_method_handler(m.handler, **kwargs)
        elif m.server_streaming:
            h = grpc.unary_stream_rpc_method_handler(m.handler, **kwargs)
        else:
            h = grpc.unary_unary_rpc_method_handler(m.handler, **kwargs)
        by_service.setdefault(service, {})[m.descriptor.name] = h
    return [grpc.method_handlers_generic_handler(s, handlers) for s, handlers in by_service.items()]
