"""Loading the local model leaves the process's stdout and stderr alone: llama.cpp's own log goes into Python
logging. (A quiet llama-cpp-python load points descriptors 1 and 2 at /dev/null for the whole load, and in
`forge serve` that swallowed start-up log lines written meanwhile by the event loop's thread.)"""

from __future__ import annotations

import logging
import os
import threading

import pytest

from forge_rpc.adapters.providers.local_llama import find_packaged_gguf
from forge_rpc.adapters.providers.local_llama_runtime import LoadedModel
from tests.local.conftest import needs_local_model

pytestmark = needs_local_model


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def test_a_load_never_redirects_the_process_output(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = find_packaged_gguf()
    assert path is not None
    caplog.set_level(logging.DEBUG, logger="forge.llama_cpp")
    expected = {(1, _identity(1)), (2, _identity(2))}
    loaded: list[LoadedModel] = []
    loader = threading.Thread(target=lambda: loaded.append(LoadedModel.load(path, n_ctx=256, n_threads=1)))
    seen: set[tuple[int, tuple[int, int]]] = set()
    loader.start()
    # What another thread would write to during the load: sampled for as long as the load runs.
    while loader.is_alive():
        seen |= {(1, _identity(1)), (2, _identity(2))}
    loader.join()
    assert loaded, "the model did not load"
    loaded[0].close()
    assert seen == expected

    out, err = capfd.readouterr()
    assert "llama_model_loader" not in out + err
    records = [r for r in caplog.records if r.name == "forge.llama_cpp"]
    assert any("llama_model_loader" in r.getMessage() for r in records)
    # A healthy load is debug material; warnings are what llama.cpp itself calls warnings.
    assert not [r.getMessage() for r in records if r.levelno >= logging.WARNING]
