"""REST from the contracts: every `google.api.http` rule of every RPC the invoker serves becomes an aiohttp
route (rules → bindings → handlers), and the same descriptors produce `/openapi.json` and `/docs`.

Modules: `rules` (HttpRule → bindings, route order), `request` (HTTP → request message), `enums` (seed enum
spellings), `encode` (message → JSON), `streaming` (NDJSON/SSE), `handlers` (routes), `schemas` and `openapi`
(the OpenAPI document), `openai_spec` (the OpenAI routes' fragment), `docs` (/openapi.json, /docs)."""

from .docs import setup_docs
from .encode import encoder_for
from .handlers import setup_transcoding

__all__ = ["encoder_for", "setup_docs", "setup_transcoding"]
