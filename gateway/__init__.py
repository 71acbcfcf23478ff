"""The aiohttp edge: REST, SSE, /ws and the OpenAI wire format over the same wrapped servicer methods."""
