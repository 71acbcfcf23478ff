"""The `forge` command as a user runs it: `forge serve` in its own process, the client commands against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.forge_process import ForgeProcess
from tests.e2e.forge_process import run_forge as run
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(scope="module")
async def served(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """`forge serve` on free ports with Ollama discovered at the fake; yields the gRPC address."""
    env = {"OLLAMA_HOST": fake.base_url, "FORGE_DATA_DIR": str(tmp_path_factory.mktemp("data"))}
    async with ForgeProcess(env) as process:
        yield process.address


async def test_chat_streams_tokens_to_the_terminal(served: str) -> None:
    code, out, err = await run("chat", "hello there", "-m", "ollama/llama3.2@tokens=4", "--address", served)
    assert code == 0, err
    assert out.strip() == "tok0 tok1 tok2 tok3"
    assert "via ollama" in err


async def test_models_list_pull_rm(served: str) -> None:
    code, out, _ = await run("models", "--address", served, "list")
    assert code == 0
    assert "llama3.2:1b" in out
    code, _, err = await run("models", "--address", served, "pull", "cli-model:1b")
    assert code == 0
    assert "%" in err  # the progress bar
    assert "pulled cli-model:1b" in err
    _, out, _ = await run("models", "--address", served, "list")
    assert "cli-model:1b" in out
    code, out, _ = await run("models", "--address", served, "rm", "cli-model:1b")
    assert code == 0
    assert "deleted" in out


async def test_unknown_model_is_a_clear_error_not_a_traceback(served: str) -> None:
    code, _, err = await run("chat", "hi", "-m", "nope", "--address", served)
    assert code == 1
    assert "NOT_FOUND" in err
    assert "Traceback" not in err


async def test_health_lists_services(served: str) -> None:
    code, out, _ = await run("health", "--address", served)
    assert code == 0
    assert "forge.chat.v1.ChatService" in out
    assert "SERVING" in out


async def test_sigterm_stops_serve_cleanly(fake: FakeUpstream, tmp_path: Path) -> None:
    env = {"OLLAMA_HOST": fake.base_url, "FORGE_DATA_DIR": str(tmp_path)}
    process = ForgeProcess(env, local_model=True)  # the default install, local model and all
    await process.start()
    assert await process.stop() == 0
    assert "Traceback" not in "".join(process.stderr)
    # The embedded PostgreSQL lives in the data directory and was stopped with forge.
    assert (tmp_path / "pg" / "PG_VERSION").exists()
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


async def test_help_on_every_command() -> None:
    for args in (["--help"], ["serve", "--help"], ["chat", "--help"], ["models", "--help"], ["health", "--help"]):
        code, out, _ = await run(*args)
        assert code == 0
        assert "usage: forge" in out
