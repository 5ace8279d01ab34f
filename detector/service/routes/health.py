from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: model and index loaded", responses={503: {"description": "still loading"}})
def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    if state.runtime is None:
        detail = "failed" if state.startup_error else "loading"
        return JSONResponse({"status": detail, "error": state.startup_error}, status_code=503)
    return JSONResponse({"status": "ready", "references": len(state.runtime.gallery.index),
                         "model": {"name": state.runtime.model.name, "version": state.runtime.model.version},
                         "precision": state.runtime.gallery.embedder.precision})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
