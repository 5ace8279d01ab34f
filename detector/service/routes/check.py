from __future__ import annotations

import asyncio
import base64
import binascii

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from pydantic import ValidationError

from detector.errors import DetectorError, ImageTooLargeError, InvalidImageError, InvalidInputError
from detector.gallery import UploadFile
from detector.runtime import Runtime
from detector.service.auth import AnyKey
from detector.service.batching import MicroBatcher
from detector.service.deps import BatcherDep, RuntimeDep, SettingsDep
from detector.service.schemas import BatchRequest, BatchResponse, CheckResult, ErrorBody
from detector.service.uploads import read_photo_form, require_content_type
from detector.store import validate_brand_slug

router = APIRouter(prefix="/v1/check", tags=["check"])
ERRORS = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 413: {"model": ErrorBody},
          415: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}
CHECK_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": 16},
                   "brand": {"type": "string", "description": "claimed brand; default: the predicted brand"},
                   "listing_id": {"type": "string"}}}}}}}


async def run_check(runtime: Runtime, batcher: MicroBatcher, files: list[UploadFile], *, brand: str | None,
                    listing_id: str | None) -> dict:
    if brand is not None:
        validate_brand_slug(brand)
    batch = await run_in_threadpool(runtime.detector.preprocess, files)
    embeddings = await batcher.embed(batch)
    return await run_in_threadpool(runtime.detector.result, embeddings, brand=brand, listing_id=listing_id)


@router.post("", response_model=CheckResult, openapi_extra=CHECK_BODY, responses=ERRORS)
async def check(request: Request, principal: AnyKey, runtime: RuntimeDep, batcher: BatcherDep, settings: SettingsDep) -> dict:
    """Check one listing's photos (1..16) against the brand it claims."""
    files, fields = await read_photo_form(request, max_files=settings.max_files, max_file_bytes=settings.max_file_bytes,
                                          fields=("brand", "listing_id"))
    return await run_check(runtime, batcher, files, brand=fields.get("brand") or None, listing_id=fields.get("listing_id"))


def _decode_base64(data: str, *, name: str, max_bytes: int) -> bytes:
    if len(data) > (max_bytes * 4) // 3 + 8:
        raise ImageTooLargeError(f"{name} exceeds the limit of {max_bytes} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError(f"{name}: not valid base64") from None


@router.post("/batch", response_model=BatchResponse, responses=ERRORS)
async def check_batch(request: Request, principal: AnyKey, runtime: RuntimeDep, batcher: BatcherDep,
                      settings: SettingsDep) -> dict:
    """Check up to 64 listings; a bad listing gets its own error entry, the others still run."""
    require_content_type(request, "application/json")
    try:
        body = BatchRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInputError(f"invalid batch request: {problems}") from None

    async def one(listing) -> dict:
        try:
            if len(listing.images) > settings.max_files:
                raise InvalidInputError(f"{len(listing.images)} photos exceeds the limit of {settings.max_files} per listing")
            files = [UploadFile(f"image {i}", _decode_base64(img.base64, name=f"image {i}", max_bytes=settings.max_file_bytes))
                     for i, img in enumerate(listing.images)]
            return await run_check(runtime, batcher, files, brand=listing.brand, listing_id=listing.listing_id)
        except DetectorError as exc:
            return {"listing_id": listing.listing_id, "error": {"code": exc.code, "message": exc.message}}

    return {"results": list(await asyncio.gather(*(one(listing) for listing in body.listings)))}
