"""Pagination shared by every List RPC: page sizes and opaque offset tokens (AIP-158)."""

from __future__ import annotations

import base64
import binascii

from ..domain import FieldViolation, InvalidArgument

__all__ = ["next_page_token", "page_offset", "page_size"]

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def page_size(value: int, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE, field: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument([FieldViolation(field, "must not be negative")])
    return min(value or default, maximum)


def page_offset(token: str) -> int:
    """The offset a token from `next_page_token` encodes; 0 for no token."""
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "o" or not value.isdigit():
            raise ValueError(token)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument([FieldViolation("page_token", "not a token from a previous page")]) from None
    return int(value)


def next_page_token(offset: int, returned: int, total: int) -> str:
    """The token for the page after `returned` items read at `offset`, or "" on the last page."""
    after = offset + returned
    return base64.urlsafe_b64encode(f"o:{after}".encode()).decode() if returned and after < total else ""
