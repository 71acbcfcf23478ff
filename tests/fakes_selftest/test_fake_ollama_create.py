"""Self-test of the fake's Ollama model creation (blobs and /api/create) through the official ollama client."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
import gguf
import numpy as np
import ollama
import pytest

from tests.fakes import FakeUpstream

pytestmark = pytest.mark.asyncio(loop_scope="module")


def tiny_gguf(path: Path, arch: str = "llama") -> str:
    """A small valid GGUF; returns its blob digest."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.arange(64, dtype=np.float32).reshape(4, 16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


async def test_blobs_are_checked_by_digest_and_found_by_head(fake: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    digest = tiny_gguf(path)
    async with aiohttp.ClientSession(base_url=fake.base_url) as http:
        async with http.head(f"/api/blobs/{digest}") as resp:
            assert resp.status == 404
        wrong = "sha256:" + "0" * 64
        async with http.post(f"/api/blobs/{wrong}", data=path.read_bytes()) as resp:
            assert resp.status == 400 and "digest mismatch" in (await resp.json())["error"]
        async with http.head(f"/api/blobs/{wrong}") as resp:
            assert resp.status == 404  # a refused upload is not kept
        async with http.head("/api/blobs/md5:abc") as resp:
            assert resp.status == 400
    client = ollama.AsyncClient(host=fake.base_url)
    assert await client.create_blob(path) == digest
    async with aiohttp.ClientSession(base_url=fake.base_url) as http, http.head(f"/api/blobs/{digest}") as resp:
        assert resp.status == 200
    uploads = [r for r in await fake.requests() if r["method"] == "POST" and r["path"].startswith("/api/blobs/")]
    assert [u["body"]["sha256"] for u in uploads] == [digest, digest]
    assert uploads[-1]["body"]["size"] == path.stat().st_size and uploads[-1]["status"] == 201


async def test_create_builds_a_model_that_is_listed_shown_and_chats(fake: FakeUpstream, tmp_path: Path) -> None:
    client = ollama.AsyncClient(host=fake.base_url)
    base, lora = tiny_gguf(tmp_path / "b.gguf", "qwen2"), tiny_gguf(tmp_path / "a.gguf")
    assert [await client.create_blob(tmp_path / n) for n in ("b.gguf", "a.gguf")] == [base, lora]
    statuses = [
        p.status
        async for p in await client.create(
            model="my-project", files={"b.gguf": base}, adapters={"a.gguf": lora}, stream=True
        )
    ]
    assert statuses == [
        "parsing GGUF",
        f"using existing layer {base}",
        f"using existing layer {lora}",
        "writing manifest",
        "success",
    ]
    assert "my-project:latest" in [m.model for m in (await client.list()).models]
    shown = await client.show("my-project")
    assert shown.modelfile is not None and f"FROM {base}\nADAPTER {lora}\n" in shown.modelfile
    assert shown.details is not None and shown.details.family == "qwen2"  # read from the uploaded GGUF
    answer = await client.chat(model="my-project:latest", messages=[{"role": "user", "content": "hi"}])
    assert answer.message.content == "".join(f"tok{i} " for i in range(8))
    created = [r for r in await fake.requests() if r["path"] == "/api/create"]
    assert created[0]["body"]["files"] == {"b.gguf": base} and created[0]["body"]["adapters"] == {"a.gguf": lora}


async def test_create_refuses_unknown_blobs_bad_names_and_non_gguf(fake: FakeUpstream, tmp_path: Path) -> None:
    client = ollama.AsyncClient(host=fake.base_url)
    missing = "sha256:" + "1" * 64
    with pytest.raises(ollama.ResponseError, match="not found") as unary:
        await client.create(model="m1", files={"x.gguf": missing})
    assert unary.value.status_code == 400
    with pytest.raises(ollama.ResponseError, match="not found"):  # streamed: an error line after a 200
        async for _ in await client.create(model="m1", files={"x.gguf": missing}, stream=True):
            pass
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    plain = await client.create_blob(text)
    with pytest.raises(ollama.ResponseError, match="only GGUF"):
        await client.create(model="m2", files={"notes.txt": plain})
    with pytest.raises(ollama.ResponseError, match="invalid model name") as bad:
        await client.create(model="bad name!", files={"notes.txt": plain})
    assert bad.value.status_code == 400
    good = tiny_gguf(tmp_path / "g.gguf")
    await client.create_blob(tmp_path / "g.gguf")
    with pytest.raises(ollama.ResponseError, match="unsupported architecture"):
        await client.create(model="fail-create-1", files={"g.gguf": good})
    with pytest.raises(ollama.ResponseError, match="neither"):
        await client.create(model="m3")
    names = [m.model for m in (await client.list()).models]
    assert not {"m1:latest", "m2:latest", "fail-create-1:latest"} & set(names)
