"""forge.rag.v1 messages ⇄ the RAG store's rows and conditions."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from forge.rag.v1 import rag_pb2 as pb
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

from ..adapters.store.rag_store import Condition, DocumentRow, NamespaceRow
from ..domain import FieldViolation, InvalidArgument
from .timestamps import timestamp

__all__ = ["check_name", "conditions", "document_cursor", "document_message", "namespace_message"]

_NAME = re.compile(r"^[a-z0-9_-]{1,63}$")
_OPS = {
    pb.FILTER_OPERATOR_UNSPECIFIED: "eq",
    pb.FILTER_OPERATOR_EQ: "eq",
    pb.FILTER_OPERATOR_NE: "ne",
    pb.FILTER_OPERATOR_IN: "in",
    pb.FILTER_OPERATOR_NOT_IN: "not_in",
    pb.FILTER_OPERATOR_CONTAINS: "contains",
    pb.FILTER_OPERATOR_GT: "gt",
    pb.FILTER_OPERATOR_GTE: "gte",
    pb.FILTER_OPERATOR_LT: "lt",
    pb.FILTER_OPERATOR_LTE: "lte",
    pb.FILTER_OPERATOR_EXISTS: "exists",
}


def _struct(value: dict[str, Any]) -> Struct:
    out = Struct()
    out.update(value)
    return out


def namespace_message(ns: NamespaceRow) -> pb.Namespace:
    return pb.Namespace(
        name=ns.name,
        description=ns.description,
        embedder=ns.embedder,
        dimension=ns.dimension,
        chunk_size=ns.chunk_size,
        chunk_overlap=ns.chunk_overlap,
        user_id=ns.owner or "",
        document_count=ns.document_count,
        chunk_count=ns.chunk_count,
        created_at=timestamp(ns.created_at),
        updated_at=timestamp(ns.updated_at),
    )


def document_message(doc: DocumentRow) -> pb.Document:
    return pb.Document(
        document_id=doc.id,
        content=doc.content,
        metadata=_struct(doc.metadata),
        namespace=doc.namespace,
        chunk_count=doc.chunk_count,
        token_count=doc.token_count,
        content_sha256=doc.content_sha256,
        created_at=timestamp(doc.created_at),
        updated_at=timestamp(doc.updated_at),
    )


def check_name(name: str, field: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument([FieldViolation(field, "lower-case letters, digits, '-' and '_', 1 to 63 characters")])
    return name


def document_cursor(token: str) -> str:
    if not token:
        return ""
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "d":
            raise ValueError(token)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument([FieldViolation("page_token", "not a token from a previous page")]) from None
    return value


def conditions(request: pb.QueryRequest) -> list[Condition]:
    out: list[Condition] = []
    for key, value in json_format.MessageToDict(request.filter).items() if request.HasField("filter") else ():
        out.append(Condition(tuple(key.split(".")), "in" if isinstance(value, list) else "eq", value))
    for i, f in enumerate(request.filters):
        if not f.key:
            raise InvalidArgument([FieldViolation(f"filters[{i}].key", "required")])
        op = _OPS.get(f.op)
        if op is None:
            raise InvalidArgument([FieldViolation(f"filters[{i}].op", "unknown operator")])
        value = json_format.MessageToDict(f.value) if f.HasField("value") else None
        if op not in ("exists",) and value is None:
            raise InvalidArgument(
                [FieldViolation(f"filters[{i}].value", f"required for {pb.FilterOperator.Name(f.op)}")]
            )
        out.append(Condition(tuple(f.key.split(".")), op, value))
    return out
