"""The local provider's pieces that need no model: finding the GGUF, describing it, the chat template choice,
stop-sequence scanning, and the thread-to-loop channel's back-pressure and stop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from forge_rpc.adapters.providers.local_llama import (
    INSTALL_HINT,
    describe_gguf,
    find_packaged_gguf,
    local_provider_if_available,
    missing_local_model,
)
from forge_rpc.adapters.providers.local_llama_runtime import (
    CHATML_TEMPLATE,
    Piece,
    StopScanner,
    TokenChannel,
    chat_template,
)


def test_missing_package_is_reported_with_the_install_hint() -> None:
    assert find_packaged_gguf("no_such_forge_model_package") is None
    reason = missing_local_model("no_such_forge_model_package")
    assert reason is not None and INSTALL_HINT in reason
    assert "forge[local]" in INSTALL_HINT and "uv sync --extra local" in INSTALL_HINT


def test_provider_is_none_or_ready_without_loading() -> None:
    provider = local_provider_if_available()
    assert (provider is None) == (missing_local_model() is not None)
    if provider is not None:
        assert provider.queued == 0 and provider.record.format == "gguf"


def test_record_comes_from_the_file_name(tmp_path: Path) -> None:
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    record = describe_gguf(gguf, 2048)
    assert (record.name, record.provider, record.capabilities) == ("local/smollm2-135m-instruct", "local", ["chat"])
    assert (record.family, record.parameter_size, record.quantization_level) == ("smollm2", "135M", "Q4_1")
    assert (record.format, record.size_bytes, record.context_length) == ("gguf", 64, 2048)


def test_template_falls_back_to_chatml_when_the_gguf_has_none() -> None:
    assert chat_template({}) == CHATML_TEMPLATE
    assert chat_template({"tokenizer.chat_template": "  "}) == CHATML_TEMPLATE
    assert chat_template({"tokenizer.chat_template": "{{ x }}"}) == "{{ x }}"


def test_stop_scanner_holds_back_a_possible_stop_and_cuts_at_it() -> None:
    scanner = StopScanner(["END"])
    assert scanner.feed("hello E") == ("hello ", False)
    assert scanner.feed("N") == ("", False)
    assert scanner.feed("X more") == ("ENX more", False)
    assert scanner.feed(" and EN") == (" and ", False)
    assert scanner.feed("D tail") == ("", True)
    assert StopScanner([]).feed("text") == ("text", False)
    tail = StopScanner(["xyz"])
    assert tail.feed("abc x") == ("abc ", False)
    assert tail.flush() == "x"


@pytest.mark.asyncio
async def test_channel_holds_a_fast_worker_and_stop_releases_it() -> None:
    channel = TokenChannel(asyncio.get_running_loop(), ahead=3)
    sent: list[bool] = []

    def worker() -> None:
        for i in range(10):
            sent.append(channel.send(f"t{i} ", 1))

    thread = threading.Thread(target=worker)
    thread.start()
    await asyncio.sleep(0.1)
    assert len(sent) == 3  # the fourth waits for room
    items = await channel.receive()
    assert [p.text for p in items if isinstance(p, Piece)] == ["t0 ", "t1 ", "t2 "]  # merged in one read
    await asyncio.sleep(0.1)
    assert len(sent) == 6
    started = time.monotonic()
    channel.stop()
    await asyncio.to_thread(thread.join, 1.0)
    assert not thread.is_alive() and time.monotonic() - started < 0.5
    assert sent[6:] == [False] * 4
