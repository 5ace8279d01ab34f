"""Thumbnail responses: cached by digest in the process, and by the browser (an original never changes)."""

from __future__ import annotations

from typing import Callable

from fastapi import Request, Response


def thumbnail_response(request: Request, digest: str, original: Callable[[], bytes]) -> Response:
    etag = f'"{digest}-thumb"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(request.app.state.thumbnails.get(digest, original), media_type="image/jpeg", headers=headers)
