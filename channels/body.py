"""Webhook bodies read against the channel's own limit.

Sanic 21.12 (under Rasa 3.6) reads a whole request body into memory before an ordinary handler
runs, up to REQUEST_MAX_SIZE (100 MB by default, and Rasa does not lower it). A webhook that checks
the size afterwards has already paid for it. Webhook routes are therefore streaming routes
(`stream=True`): the declared length is checked first and the body is read only up to the limit.
What a refused client still sends is drained by Sanic after the 413 and never kept.
"""
from __future__ import annotations

from sanic.exceptions import PayloadTooLarge
from sanic.request import Request


async def read_body(request: Request, limit: int) -> bool:
    """Read the body of a streaming route into `request.body`; False (and nothing more read) when
    it is, or says it is, longer than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        return False
    if request.body or request.stream is None:  # a non-streaming route: Sanic has read it already
        return len(request.body or b"") <= limit
    body = bytearray()
    try:
        while True:
            chunk = await request.stream.read()
            if chunk is None:
                break
            body += chunk
            if len(body) > limit:  # chunked, or a length that lied
                return False
    except PayloadTooLarge:
        return False
    request.body = bytes(body)
    return True
