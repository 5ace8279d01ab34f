"""Reading request bodies under limits: multipart photo uploads, and the body size and pace guard."""

from __future__ import annotations

import asyncio

from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from detector.errors import BodyTimeout, ImageTooLargeError, InvalidInputError, UnsupportedMediaTypeError
from detector.gallery import UploadFile
from detector.service.errors import error_response

# The raster formats the decoder accepts (detector/images.py), and untyped parts; never image/svg+xml and the like.
ACCEPTED_PART_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/webp", "image/gif",
                                 "image/bmp", "image/x-ms-bmp", "image/tiff", "application/octet-stream"})


def media_type(content_type: str | None) -> str:
    """``image/JPEG; q=1`` -> ``image/jpeg``."""
    return (content_type or "").split(";")[0].strip().lower()


def require_content_type(request: Request, expected: str) -> None:
    content_type = media_type(request.headers.get("content-type"))
    if content_type != expected:
        raise UnsupportedMediaTypeError(f"expected Content-Type {expected}, got {content_type or 'none'}")


async def read_photo_form(request: Request, *, max_files: int, max_file_bytes: int,
                          fields: tuple[str, ...]) -> tuple[list[UploadFile], dict[str, str]]:
    """Parse ``multipart/form-data`` with 1..max_files ``files`` parts and the named text fields."""
    require_content_type(request, "multipart/form-data")
    try:
        form = await request.form(max_files=max_files + 1, max_fields=len(fields) + 8)
    except StarletteHTTPException as exc:  # Starlette reports malformed bodies this way
        raise InvalidInputError(f"malformed multipart body: {exc.detail}") from None
    except (ValueError, KeyError, UnicodeDecodeError, AssertionError) as exc:
        raise InvalidInputError(f"malformed multipart body: {exc}") from None
    try:
        files: list[UploadFile] = []
        values: dict[str, str] = {}
        for key, value in form.multi_items():
            if key == "files":
                if not isinstance(value, StarletteUploadFile):
                    raise InvalidInputError("'files' must be file parts, not text fields")
                if len(files) >= max_files:
                    raise InvalidInputError(f"more than {max_files} files in one request")
                part_type = media_type(value.content_type) or "application/octet-stream"
                if part_type not in ACCEPTED_PART_TYPES:
                    raise UnsupportedMediaTypeError(f"file {value.filename!r} has content type {part_type}, not an image")
                data = await value.read(max_file_bytes + 1)
                if len(data) > max_file_bytes:
                    raise ImageTooLargeError(f"file {value.filename!r} exceeds the limit of {max_file_bytes} bytes")
                files.append(UploadFile(value.filename or f"file {len(files)}", data))
            elif key in fields:
                if not isinstance(value, str):
                    raise InvalidInputError(f"field {key!r} must be text")
                if key in values:
                    raise InvalidInputError(f"field {key!r} given twice")
                values[key] = value
            else:
                raise InvalidInputError(f"unexpected form field {key!r}; expected 'files' and {', '.join(fields) or 'nothing else'}")
        if not files:
            raise InvalidInputError("no 'files' parts in the request")
        return files, values
    finally:
        await form.close()


class BodyGuard:
    """Bodies over their limit are refused (from Content-Length at once, else while streaming):
    ``max_json_bytes`` for JSON, ``max_form_bytes`` for anything else. A body that stalls for
    ``timeout_s`` between chunks ends the request with 408. Either way the application sees the
    client disconnect, and the client gets the refusal."""

    def __init__(self, app: ASGIApp, *, max_form_bytes: int, max_json_bytes: int, timeout_s: float):
        self.app = app
        self.max_form_bytes = max_form_bytes
        self.max_json_bytes = max_json_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        is_json = media_type(headers.get(b"content-type", b"").decode("latin-1")) == "application/json"
        max_bytes = self.max_json_bytes if is_json else self.max_form_bytes
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0 or declared > max_bytes:
                message = "invalid Content-Length" if declared < 0 else f"request body exceeds {max_bytes} bytes"
                status, code = (400, "validation_error") if declared < 0 else (413, "too_large")
                await error_response(status, code, message)(scope, receive, send)
                return
        received = 0
        body_done = False
        refusal: tuple[int, str, str] | None = None  # set when the guard ends the body
        response_started = False

        async def guarded_receive():
            nonlocal received, body_done, refusal
            if body_done or refusal is not None:  # after the body only a disconnect can come: no deadline on it
                return await receive() if refusal is None else {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except asyncio.TimeoutError:
                refusal = (408, BodyTimeout.code, f"the request body stalled for {self.timeout_s:g} s")
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > max_bytes:
                    refusal = (413, ImageTooLargeError.code, f"request body exceeds {max_bytes} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message) -> None:
            nonlocal response_started
            if refusal is not None:
                return  # the app's answer to a body it never fully got is replaced by the refusal
            response_started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if refusal is None:
                raise
        if refusal is not None and not response_started:
            await error_response(*refusal)(scope, receive, send)
