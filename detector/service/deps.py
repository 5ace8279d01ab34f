"""Shared request dependencies: the loaded runtime, the micro-batcher and admission control."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from detector.runtime import Runtime
from detector.service.admission import Admission
from detector.service.batching import MicroBatcher
from detector.service.errors import NotReadyError


def get_runtime(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    if runtime is None:
        raise NotReadyError("the model and index are still loading; retry shortly")
    return runtime


def get_batcher(request: Request) -> MicroBatcher:
    get_runtime(request)
    return request.app.state.batcher


def get_admission(request: Request) -> Admission:
    return request.app.state.admission


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
