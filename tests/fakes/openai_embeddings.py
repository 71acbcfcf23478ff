"""OpenAI POST /v1/embeddings: deterministic vectors, float or base64."""

from __future__ import annotations

import base64

from aiohttp import web

from .openai_errors import bad_key_response, error_response, fail_response, request_id_headers
from .scenario import ScenarioError
from .state import record_of
from .streaming import run_unary
from .wire_common import begin, count_words, embedding, json_response, pack_float32, read_object


def _embedding_inputs(raw: object) -> list[tuple[str, int]] | None:
    """(text to hash, prompt tokens) per input; None when the shape is wrong.

    Token arrays are hashed via their decimal text so they are as
    deterministic as strings.
    """
    if isinstance(raw, str):
        return [(raw, count_words([raw]))]
    if not isinstance(raw, list) or not raw:
        return None
    if all(isinstance(t, int) for t in raw):
        return [(" ".join(map(str, raw)), len(raw))]
    out: list[tuple[str, int]] = []
    for item in raw:
        if isinstance(item, str):
            out.append((item, count_words([item])))
        elif isinstance(item, list) and all(isinstance(t, int) for t in item):
            out.append((" ".join(map(str, item)), len(item)))
        else:
            return None
    return out


async def embeddings(request: web.Request) -> web.StreamResponse:
    rec = record_of(request)
    body = await read_object(request, rec)
    if body is None:
        return error_response(400, "We could not parse the JSON body of your request.")
    try:
        sc = begin(request, rec, body.get("model"), False)
    except ScenarioError as exc:
        return error_response(400, str(exc), param="model")
    if (denied := bad_key_response(request)) is not None:
        return denied
    if sc.fail:
        return fail_response(sc)
    if "input" not in body:
        return error_response(
            400,
            "Missing required parameter: 'input'.",
            param="input",
            code="missing_required_parameter",
        )
    inputs = _embedding_inputs(body["input"])
    if inputs is None:
        return error_response(400, "'$.input' is invalid.", param="input")
    dims = body.get("dimensions", 8)
    if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
        return error_response(400, "Invalid 'dimensions'.", param="dimensions")
    as_base64 = body.get("encoding_format") == "base64"

    def build() -> web.Response:
        data = []
        for index, (text, _) in enumerate(inputs):
            vec = embedding(text, dims)
            encoded: object = base64.b64encode(pack_float32(vec)).decode() if as_base64 else vec
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(t for _, t in inputs)
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": sc.base,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=request_id_headers(),
        )

    return await run_unary(request, rec, sc, 0, build)
