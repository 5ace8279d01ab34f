from __future__ import annotations

import asyncio
import base64
import binascii

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from detector.errors import DetectorError, ImageTooLargeError, InvalidImageError, InvalidInputError
from detector.gallery import UploadFile
from detector.limits import Limits
from detector.pixel_budget import PixelAllowance
from detector.results import CheckResult
from detector.runtime import Runtime
from detector.service.auth import AnyKey
from detector.service.batching import MicroBatcher
from detector.service.admission import Admission
from detector.service.deps import AdmissionDep, BatcherDep, RuntimeDep
from detector.service.schemas import BatchListing, BatchRequest, BatchResponse, ErrorBody
from detector.service.uploads import read_photo_form, require_content_type

ERRORS = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 413: {"model": ErrorBody},
          415: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def _check_body(limits: Limits) -> dict:
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["files"],
        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                 "maxItems": limits.max_files_per_check},
                       "brand": {"type": "string", "description": "claimed brand; default: the predicted brand"},
                       "listing_id": {"type": "string"}}}}}}}


async def run_check(runtime: Runtime, batcher: MicroBatcher, admission: Admission, files: list[UploadFile], *,
                     brand: str | None, listing_id: str | None, key_id: str, allowance: PixelAllowance | None = None,
                     genuine_example: bool = False) -> CheckResult:
    with admission.hold(len(files)):
        return await run_in_threadpool(runtime.detector.check, files, brand=brand, listing_id=listing_id,
                                       embed=batcher.embed_blocking, allowance=allowance, key_id=key_id,
                                       genuine_example=genuine_example)


def _decode_base64(data: str, *, name: str, max_bytes: int) -> bytes:
    if len(data) > (max_bytes * 4) // 3 + 8:
        raise ImageTooLargeError(f"{name} exceeds the limit of {max_bytes} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError(f"{name}: not valid base64") from None


def build_router(limits: Limits) -> APIRouter:
    router = APIRouter(prefix="/v1/check", tags=["check"])

    @router.post("", response_model=CheckResult, openapi_extra=_check_body(limits), responses=ERRORS,
                 description=f"Check one listing's photos (1..{limits.max_files_per_check}) against the brand it claims.")
    async def check(request: Request, principal: AnyKey, runtime: RuntimeDep, batcher: BatcherDep,
                    admission: AdmissionDep) -> CheckResult:
        admission.admit()
        files, fields = await read_photo_form(request, max_files=limits.max_files_per_check,
                                              max_file_bytes=limits.max_file_bytes, fields=("brand", "listing_id"))
        return await run_check(runtime, batcher, admission, files, brand=fields.get("brand") or None,
                                listing_id=fields.get("listing_id"), key_id=principal.key_id)

    @router.post("/batch", response_model=BatchResponse, responses=ERRORS,
                 description=f"Check up to {limits.max_batch_listings} listings; a bad listing gets its own error entry, "
                             "the others still run.")
    async def check_batch(request: Request, principal: AnyKey, runtime: RuntimeDep, batcher: BatcherDep,
                          admission: AdmissionDep) -> dict:
        admission.admit()
        require_content_type(request, "application/json")
        try:
            body = BatchRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            raise InvalidInputError(f"invalid batch request: {problems}") from None
        if len(body.listings) > limits.max_batch_listings:
            raise InvalidInputError(f"invalid batch request: {len(body.listings)} listings exceeds the limit of "
                                    f"{limits.max_batch_listings}")

        # Listings run a few at a time, so that a full batch fits through admission on its own, and
        # all draw decoded pixels from one allowance, so the batch costs what one request may.
        running = asyncio.Semaphore(max(1, admission.capacity // limits.max_files_per_check))
        allowance = PixelAllowance(limits.max_request_pixels)

        async def one(listing: BatchListing) -> CheckResult | dict:
            try:
                async with running:
                    files = [UploadFile(f"image {i}", _decode_base64(img.base64, name=f"image {i}", max_bytes=limits.max_file_bytes))
                             for i, img in enumerate(listing.images)]
                    return await run_check(runtime, batcher, admission, files, brand=listing.brand,
                                            listing_id=listing.listing_id, key_id=principal.key_id, allowance=allowance)
            except DetectorError as exc:
                return {"listing_id": listing.listing_id, "error": {"code": exc.code, "message": exc.message}}

        return {"results": list(await asyncio.gather(*(one(listing) for listing in body.listings)))}

    return router
