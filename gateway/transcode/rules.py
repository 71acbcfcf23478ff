"""google.api.http rules → bindings: which HTTP verb and path template serve which RPC, and the order in which
aiohttp must try them.

Template grammar (google/api/http.proto):
    Template = "/" Segments [ ":" Verb ] ;  Segment = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;  FieldPath = IDENT { "." IDENT } ;
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2

from ..invoke import MethodInfo

__all__ = ["Binding", "Template", "Variable", "bindings", "parse_template", "registration_order"]

_HTTP_METHODS = ("get", "put", "post", "delete", "patch")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Variable:
    """A path variable: the request field it sets and the regex its text must match."""

    field_path: tuple[str, ...]
    """Proto field names from the request message down ("a", "b" for `{a.b}`); empty for a bare `*`."""
    regex: str
    group: str
    """aiohttp's name for the match group (`v0`…): aiohttp names must be identifiers, `a.b` is not."""
    multi_segment: bool

    @property
    def name(self) -> str:
        return ".".join(self.field_path)


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    """As declared in the .proto, trailing slash and custom verb included."""
    route_path: str
    """The aiohttp path (`/api/v1/models/{v0:.+}`)."""
    doc_path: str
    """The OpenAPI path (`/api/v1/models/{name}`)."""
    variables: tuple[Variable, ...]
    literal_segments: int
    verb: str


@dataclass(frozen=True, slots=True)
class Binding:
    """One verb + path serving one RPC: the rule itself (index 0) or one of its additional_bindings."""

    info: MethodInfo
    http_method: str
    template: Template
    body: str
    response_body: str
    index: int

    @property
    def service(self) -> str:
        return self.info.descriptor.containing_service.name

    @property
    def rpc(self) -> str:
        return str(self.info.descriptor.name)


def _split_top(text: str, sep: str) -> list[str]:
    """Splits on `sep` outside braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _pattern_regex(segments: Iterable[str]) -> tuple[str, bool]:
    out, multi = [], False
    for seg in segments:
        if seg == "**":
            out.append(".+")
            multi = True
        elif seg == "*":
            out.append("[^/]+")
        else:
            out.append(re.escape(seg))
    return "/".join(out), multi


def parse_template(text: str) -> Template:
    if not text.startswith("/"):
        raise ValueError(f"path template {text!r} must start with '/'")
    segments = _split_top(text[1:], "/")
    verb = ""
    tail = _split_top(segments[-1], ":")
    if len(tail) > 2:
        raise ValueError(f"path template {text!r} has more than one custom verb")
    if len(tail) == 2:
        segments[-1], verb = tail
    route: list[str] = []
    doc: list[str] = []
    variables: list[Variable] = []
    literals = 0
    for seg in segments:
        if seg.startswith("{") and seg.endswith("}"):
            path, _, pattern = seg[1:-1].partition("=")
            names = tuple(path.split("."))
            if not all(_IDENT.fullmatch(n) for n in names):
                raise ValueError(f"bad variable {seg!r} in path template {text!r}")
            regex, multi = _pattern_regex(pattern.split("/") if pattern else ["*"])
            var = Variable(names, regex, f"v{len(variables)}", multi)
        elif seg in ("*", "**"):
            regex, multi = _pattern_regex([seg])
            var = Variable((), regex, f"v{len(variables)}", multi)
        else:
            if "{" in seg or "}" in seg:
                raise ValueError(f"bad segment {seg!r} in path template {text!r}")
            route.append(seg)
            doc.append(seg)
            literals += 1
            continue
        variables.append(var)
        # aiohttp's own single-segment default ([^{}/]+) for `*`; an explicit regex otherwise.
        route.append(f"{{{var.group}}}" if var.regex == "[^/]+" else f"{{{var.group}:{var.regex}}}")
        doc.append(f"{{{var.name or var.group}}}")
    suffix = f":{verb}" if verb else ""
    return Template(
        text, "/" + "/".join(route) + suffix, "/" + "/".join(doc) + suffix, tuple(variables), literals, verb
    )


def _rule_bindings(info: MethodInfo, rule: http_pb2.HttpRule, index: int) -> Binding | None:
    kind = rule.WhichOneof("pattern")
    if kind in _HTTP_METHODS:
        method, path = kind.upper(), str(getattr(rule, kind))
    elif kind == "custom":
        method, path = rule.custom.kind.upper(), rule.custom.path
    else:
        return None
    return Binding(info, method, parse_template(path), rule.body, rule.response_body, index)


def bindings(methods: Iterable[MethodInfo]) -> Iterator[Binding]:
    """Every binding of every annotated RPC. Client-streaming RPCs have no REST form and are skipped."""
    for info in methods:
        options = info.descriptor.GetOptions()
        if info.client_streaming or not options.HasExtension(annotations_pb2.http):
            continue
        rule = options.Extensions[annotations_pb2.http]
        for index, r in enumerate([rule, *rule.additional_bindings]):
            binding = _rule_bindings(info, r, index)
            if binding is not None:
                yield binding


def registration_order(items: Iterable[Binding]) -> list[Binding]:
    """Most specific first. aiohttp indexes resources by their literal prefix (up to the first variable) and
    tries longer prefixes first, so `/api/tasks/history/` already beats `/api/tasks/{task_id}/`; within one
    prefix it tries resources in registration order. Hence: templates with a custom verb before the bare
    variable (`{job_id}:cancel` before `{job_id}`, whose `[^/]+` would also match `abc:cancel`), multi-segment
    variables (`**`) last, and more literal segments first."""

    def key(b: Binding) -> tuple[bool, bool, int]:
        t = b.template
        return (any(v.multi_segment for v in t.variables), not t.verb, -t.literal_segments)

    return sorted(items, key=key)
