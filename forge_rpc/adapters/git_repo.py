"""A project's git repository, read by running `git` (the program users run, so it honours their repository's
configuration and never needs a library that reimplements it).

Every query runs in the project directory and is limited to it: in a monorepo, a project in a subdirectory
counts only the commits and files under that subdirectory, and file names are relative to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from ..domain import DeadlineExceeded, FailedPrecondition
from ..domain.retrain import Changes

__all__ = ["changes_since", "head_commit", "is_repository", "tracked_files"]

_TIMEOUT_S = 60.0


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


async def _git(cwd: Path, *args: str) -> tuple[int, bytes, str]:
    """(exit code, stdout, stderr) of `git args…` in `cwd`."""
    try:
        proc = await asyncio.create_subprocess_exec(
            # quotepath off: non-ASCII file names come out as they are, not as octal escapes.
            "git", "-c", "core.quotepath=off", *args,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except FileNotFoundError as exc:
        if exc.filename == "git":
            raise FailedPrecondition("git is not installed on this server", "GIT_UNAVAILABLE") from None
        raise FailedPrecondition(f"{cwd} is not a directory on this server", "PROJECT_NOT_FOUND") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), _TIMEOUT_S)
    except TimeoutError:
        await _kill(proc)
        raise DeadlineExceeded(f"git {args[0]} took longer than {_TIMEOUT_S:.0f} s in {cwd}") from None
    except asyncio.CancelledError:  # the caller left: never leave git running behind it
        await _kill(proc)
        raise
    assert proc.returncode is not None
    return proc.returncode, out, err.decode(errors="replace").strip()


async def _ok(cwd: Path, *args: str) -> bytes:
    code, out, err = await _git(cwd, *args)
    if code != 0:
        raise FailedPrecondition(f"git {args[0]} failed in {cwd}: {err or f'exit code {code}'}", "GIT_FAILED")
    return out


def _names(out: bytes) -> list[str]:
    return [n.decode(errors="surrogateescape") for n in out.split(b"\0") if n]


async def is_repository(path: Path) -> bool:
    """Is `path` inside a git work tree? Any other git complaint (an unsafe owner, a corrupt repository) is an
    error naming it, not a silent "no"."""
    code, out, err = await _git(path, "rev-parse", "--is-inside-work-tree")
    if code == 0:
        return out.strip() == b"true"
    if "not a git repository" in err:
        return False
    raise FailedPrecondition(f"git cannot read {path}: {err}", "GIT_FAILED")


async def head_commit(path: Path) -> str:
    """The full id of HEAD; FAILED_PRECONDITION when the repository has no commit yet."""
    code, out, _ = await _git(path, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if code != 0:
        raise FailedPrecondition(f"the git repository at {path} has no commits yet", "REPOSITORY_EMPTY")
    return out.decode().strip()


async def tracked_files(path: Path) -> list[str]:
    """The files git tracks under `path`, relative to it."""
    return _names(await _ok(path, "ls-files", "-z"))


async def changes_since(path: Path, base: str) -> Changes:
    """What changed between `base` (the commit the last training used; "" for none) and HEAD. Without a base, or
    with one the repository no longer has, every commit and tracked file counts. Renames count as two files (the
    old path may be a critical one)."""
    head = await head_commit(path)
    known = bool(base) and (await _git(path, "cat-file", "-e", f"{base}^{{commit}}"))[0] == 0
    if not known:
        count = await _ok(path, "rev-list", "--count", "HEAD", "--", ".")
        return Changes(head, base, False, int(count), tuple(await tracked_files(path)))
    count = await _ok(path, "rev-list", "--count", f"{base}..HEAD", "--", ".")
    diff = await _ok(path, "diff", "--name-only", "-z", "--relative", "--no-renames", base, "HEAD", "--", ".")
    return Changes(head, base, True, int(count), tuple(_names(diff)))
