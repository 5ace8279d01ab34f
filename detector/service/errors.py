"""The one place where typed errors become HTTP responses ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from detector.errors import DetectorError

log = logging.getLogger("detector.service")

STATUS_BY_CODE = {
    "invalid_image": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "unknown_brand": 404,
    "not_found": 404,
    "request_timeout": 408,
    "conflict": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "overloaded": 503,
    "store_unavailable": 503,
    "not_ready": 503,
    "insufficient_storage": 507,
}
CODE_BY_STATUS = {400: "validation_error", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                  405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type", 422: "validation_error"}


class NotReadyError(DetectorError):
    code = "not_ready"


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DetectorError)
    async def detector_error(request: Request, exc: DetectorError) -> JSONResponse:
        status = STATUS_BY_CODE.get(exc.code, 500)
        if status == 500:
            log.error("server-side error: %s", exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:5])
        return error_response(422, "validation_error", details or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = CODE_BY_STATUS.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def disconnected(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # the client (or the body guard, on its behalf) ended the body: nobody reads this answer
        return error_response(400, "validation_error", "the client disconnected before its request body was complete")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")
