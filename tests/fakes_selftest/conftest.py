"""Fixtures for the fake-upstream self-tests.

Module-scoped fake (spawning one costs ~0.4 s, mostly importing aiohttp):
each test module gets its own process and event loop, and every test gets
it freshly reset. Test modules must run in the module loop:
``pytestmark = pytest.mark.asyncio(loop_scope="module")``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.fakes import FakeUpstream


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest_asyncio.fixture(loop_scope="module")
async def fake(shared_fake: FakeUpstream) -> FakeUpstream:
    await shared_fake.reset()
    return shared_fake
