"""With FORGE_REDIS_URL set, forge connects to Redis at start and hands the connection to its components."""

from __future__ import annotations

import dataclasses

from forge_rpc.server.config import load_config
from forge_rpc.testing import running_forge
from tests.conftest import forge_config
from tests.fakes import FakeUpstream


async def test_forge_connects_to_the_configured_redis(fake: FakeUpstream, redis_url: str) -> None:
    cfg = forge_config(fake)
    cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, redis_url=redis_url))
    async with running_forge(cfg, http=False) as app:
        assert app.redis is not None
        assert await app.redis.ping()
    assert app.redis is None  # closed on stop


def test_redis_url_comes_from_the_environment() -> None:
    cfg = load_config(env={"FORGE_REDIS_URL": "redis://10.0.0.5:6380/2"})
    assert cfg.storage.redis_url == "redis://10.0.0.5:6380/2"
    assert load_config(env={}).storage.redis_url is None
