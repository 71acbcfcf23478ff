"""llama.cpp's own log, into Python logging, so that loading a model leaves the process's output alone.

llama-cpp-python quietens a load (`verbose=False`) by pointing file descriptors 1 and 2 at /dev/null for as long as
the load lasts: whatever any other thread writes meanwhile is lost. In `forge serve` that window overlapped the
start-up and swallowed "HTTP listening" one start in six. So forge loads with `verbose=True`, which redirects
nothing, hands llama.cpp a log callback that writes into the `forge.llama_cpp` logger, and keeps the few lines a
verbose load prints from Python (system info, metadata) for the debug log.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["quiet_load"]

log = logging.getLogger("forge.llama_cpp")

# ggml's levels: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 "continues the previous line". A load logs ~150 info
# lines about tensors and buffers: debug material for forge's log.
_LEVELS = {3: logging.WARNING, 4: logging.ERROR}

_lock = threading.Lock()
# Kept referenced for the life of the process: llama.cpp holds the C pointer to it.
_callback: Callable[..., Any] | None = None


def _route_llama_log() -> None:
    global _callback
    if _callback is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def forward(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", "replace").rstrip()
        if line:
            log.log(_LEVELS.get(level, logging.DEBUG), "%s", line)

    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    _callback = forward


@contextlib.contextmanager
def quiet_load() -> Iterator[None]:
    """Around `Llama(..., verbose=True)`: llama.cpp's log goes to `forge.llama_cpp`, and so do the Python prints
    of the load. `sys.stderr` is swapped (not the descriptor): logging's handlers keep the stream they were given,
    and the lock keeps two loads from restoring each other's swap."""
    with _lock:
        _route_llama_log()
        printed = io.StringIO()
        with contextlib.redirect_stderr(printed):
            yield
        for line in printed.getvalue().splitlines():
            if line.strip():
                log.debug("%s", line)
