"""Control API under /_control: read records, set defaults, reset.

Not part of any provider's wire format; only FakeUpstream and tests call it.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from .scenario import ScenarioError, validate_defaults
from .state import state_of
from .wire_common import json_response

# Upper bound for a long-poll so a forgotten waiter cannot pin a handler.
_MAX_WAIT_S = 60.0


async def get_requests(request: web.Request) -> web.StreamResponse:
    """All records; ``?tag=`` filters; ``&wait_ended=1&timeout=S`` long-polls.

    The long-poll returns every record with the tag once at least one of them
    has ended, or 408 when none has within the timeout.
    """
    recorder = state_of(request).recorder
    tag = request.query.get("tag")
    if request.query.get("wait_ended") in ("1", "true"):
        if tag is None:
            return json_response({"error": "wait_ended needs tag"}, 400)
        try:
            timeout = min(float(request.query.get("timeout", "2")), _MAX_WAIT_S)
        except ValueError:
            return json_response({"error": "bad timeout"}, 400)
        records = await recorder.wait_ended(tag, timeout)
        if records is None:
            return json_response({"error": f"no ended request with tag {tag!r}"}, 408)
    else:
        records = recorder.matching(tag)
    return json_response([r.to_json() for r in records])


async def get_pulls(request: web.Request) -> web.StreamResponse:
    return json_response(dict(state_of(request).recorder.pulls))


async def set_defaults(request: web.Request) -> web.StreamResponse:
    try:
        raw = orjson.loads(await request.read() or b"{}")
        if not isinstance(raw, dict):
            raise ScenarioError("defaults must be a JSON object")
        defaults = validate_defaults(raw)
    except (orjson.JSONDecodeError, ScenarioError) as exc:
        return json_response({"error": str(exc)}, 400)
    st = state_of(request)
    # Replace, not merge: a test states the whole default behaviour it wants.
    st.defaults.clear()
    st.defaults.update(defaults)
    return json_response(st.defaults)


async def reset(request: web.Request) -> web.StreamResponse:
    state_of(request).reset()
    return json_response({"ok": True})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/_control/requests", get_requests)
    app.router.add_get("/_control/pulls", get_pulls)
    app.router.add_post("/_control/defaults", set_defaults)
    app.router.add_post("/_control/reset", reset)
