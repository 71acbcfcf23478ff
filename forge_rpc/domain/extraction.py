"""A dataset extracted from a project's sources when a job names none (AI Forge's `extract_data` step): every Python
module, class and function with a docstring becomes a question/answer pair, and so does every markdown section
with text under its heading.

Pure: it is handed (path, text) pairs. Which files, and reading them, is the workspace's business; `wanted` says
which paths are worth reading (sources and docs, not tests, virtualenvs, build output or hidden directories).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath

from .datasets import check_example

__all__ = ["MAX_EXAMPLES", "MAX_FILE_BYTES", "extract", "markdown_examples", "python_examples", "wanted"]

MAX_EXAMPLES = 5000
"""Extraction stops here: a monorepo would otherwise yield far more than a LoRA run can use."""
MAX_FILE_BYTES = 1_000_000
"""Larger files are generated or vendored, not documentation worth learning."""

_SUFFIXES = frozenset({".py", ".md", ".markdown"})
_SKIP_DIRS = frozenset(
    {"tests", "test", "venv", "env", "virtualenv", "site-packages", "node_modules", "__pycache__", "build", "dist"}
)
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_MIN_ANSWER_CHARS = 20
"""A markdown section shorter than this ("TBD", a lone link) teaches nothing."""

Pair = dict[str, str]


def wanted(path: str) -> bool:
    """Is this project-relative path a source or doc to extract from?"""
    p = PurePosixPath(path)
    if p.suffix.lower() not in _SUFFIXES:
        return False
    if any(part.startswith(".") or part.lower() in _SKIP_DIRS for part in p.parts[:-1]):
        return False
    name = p.name
    return not (name.startswith(".") or name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py")


def _module(path: str) -> str:
    p = PurePosixPath(path).with_suffix("")
    parts = p.parts[:-1] if p.name == "__init__" else p.parts
    return ".".join(parts) or p.name


def _pair(prompt: str, completion: str) -> Pair:
    return {"prompt": prompt, "completion": completion.strip()}


Definition = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def _defined(body: list[ast.stmt], prefix: str, in_class: bool) -> Iterator[tuple[str, str, Definition]]:
    """(kind, qualified name, node) of the classes, methods and functions a body defines, nested classes too
    (functions inside functions are implementation details, not the project's API)."""
    for node in body:
        if isinstance(node, ast.ClassDef):
            yield "class", f"{prefix}{node.name}", node
            yield from _defined(node.body, f"{prefix}{node.name}.", True)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield "method" if in_class else "function", f"{prefix}{node.name}", node


def python_examples(path: str, source: str) -> list[Pair]:
    """Question/answer pairs from one Python file's docstrings; none when it does not parse."""
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError):
        return []
    module = _module(path)
    out: list[Pair] = []
    doc = ast.get_docstring(tree)
    if doc:
        out.append(_pair(f"What is the module `{module}` for?", doc))
    for kind, name, node in _defined(tree.body, "", False):
        doc = ast.get_docstring(node)
        if not doc:
            continue
        if isinstance(node, ast.ClassDef):
            out.append(_pair(f"What is the class `{module}.{name}` for?", doc))
        else:
            signature = f"{name}({ast.unparse(node.args)})"
            out.append(_pair(f"What does the {kind} `{module}.{signature}` do?", doc))
    return out


def markdown_examples(path: str, text: str) -> list[Pair]:
    """A pair per section (heading → its text up to the next heading); headings inside code fences are code."""
    out: list[Pair] = []
    title, body, fenced = "", list[str](), False

    def flush() -> None:
        answer = "\n".join(body).strip()
        if title and len(answer) >= _MIN_ANSWER_CHARS:
            out.append(_pair(f"What does {path} say about {title}?", answer))

    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        flush()
        title, body = heading.group(2), []
    flush()
    return out


def extract(files: Iterable[tuple[str, str]], max_chars: int, limit: int = MAX_EXAMPLES) -> list[Pair]:
    """The pairs of every file, in the order given, without duplicates; a pair longer than `max_chars` is
    left out (it is generated, so it cannot fail the dataset the way a user's bad line does)."""
    seen: set[tuple[str, str]] = set()
    out: list[Pair] = []
    for path, text in files:
        pairs = python_examples(path, text) if path.endswith(".py") else markdown_examples(path, text)
        for pair in pairs:
            key = (pair["prompt"], pair["completion"])
            if key in seen or check_example(pair, max_chars) is not None:
                continue
            seen.add(key)
            out.append(pair)
            if len(out) >= limit:
                return out
    return out
