"""Shared request dependencies: the loaded runtime, settings and the micro-batcher."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from detector.runtime import Runtime
from detector.service.batching import MicroBatcher
from detector.service.errors import NotReadyError
from detector.service.settings import Settings


def get_runtime(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    if runtime is None:
        raise NotReadyError("the model and index are still loading; retry shortly")
    return runtime


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_batcher(request: Request) -> MicroBatcher:
    get_runtime(request)
    return request.app.state.batcher


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
