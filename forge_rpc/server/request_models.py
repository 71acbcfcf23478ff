"""The model names a request carries, found generically: a string field `model` on the request, or on any
message field of it (`chat.model`, each of `requests[i].model`). The paths are worked out once per request type.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["ModelField", "model_fields"]

ModelField = tuple[str, str]
"""(the field's path as errors name it, e.g. `chat.model` or `requests[2].model`; the name it holds)."""

_Path = tuple[str, bool]  # (the message field holding `model`, or "" for the request itself; repeated?)
_paths: dict[str, tuple[_Path, ...]] = {}


def _has_model(descriptor: Descriptor | None) -> bool:
    field = descriptor.fields_by_name.get("model") if descriptor is not None else None
    return field is not None and field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated


def _paths_of(descriptor: Any) -> tuple[_Path, ...]:
    found = _paths.get(descriptor.full_name)
    if found is None:
        paths: list[_Path] = [("", False)] if _has_model(descriptor) else []
        # Map fields are repeated entry messages whose value may be a message: they name keys, not models.
        paths += [
            (f.name, bool(f.is_repeated))
            for f in descriptor.fields
            if f.type == FieldDescriptor.TYPE_MESSAGE and _has_model(f.message_type)
        ]
        found = _paths[descriptor.full_name] = tuple(paths)
    return found


def model_fields(request: Any) -> Iterator[ModelField]:
    """Every `model` a request names, empty ones included (an empty model means the default model)."""
    if not isinstance(request, Message):
        return  # a client stream's iterator: its messages are not seen by policies
    for name, repeated in _paths_of(request.DESCRIPTOR):
        if not name:
            yield "model", str(getattr(request, "model"))  # noqa: B009 - no static attribute on Message
        elif repeated:
            for i, item in enumerate(getattr(request, name)):
                yield f"{name}[{i}].model", str(item.model)
        elif request.HasField(name):
            yield f"{name}.model", str(getattr(request, name).model)
