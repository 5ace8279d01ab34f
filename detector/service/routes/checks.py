"""Stored checks, reviewers' decisions, genuine examples and per-brand calibration.

Who sees what: admin keys every check; brand keys the checks that claim their brand (not those
merely predicted to be theirs); pipeline keys the checks they asked for. A check another key may not see answers 404, as if absent.
Decisions: admin or the brand's own key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from detector.alignment.heatmap import render_heatmap
from detector.brand_calibration import BrandCalibrator
from detector.checks import CheckFilter, Decision
from detector.errors import ForbiddenError, InvalidInputError, NotFoundError
from detector.gallery import UploadFile
from detector.images import media_type
from detector.keys import Principal
from detector.results import CalibrationInfo
from detector.runtime import Runtime
from detector.service.auth import AdminKey, AnyKey, require_brand_access
from detector.service.deps import AdmissionDep, BatcherDep, RuntimeDep
from detector.service.routes.check import run_check
from detector.service.thumbnails import thumbnail_response
from detector.service.schemas import (BrandCalibration, BrandStats, CheckList, DecisionCreate, DecisionRecord, ErrorBody, ExamplesCreated,
                                      ReferencesCreated, ReferencesFromCheck, StoredCheck)
from detector.service.uploads import read_photo_form
from detector.store import MAX_ID, validate_brand_slug

router = APIRouter(tags=["checks"])
CheckId = Annotated[int, Path(ge=1, le=MAX_ID)]
PhotoIndex = Annotated[int, Path(ge=0, le=1000)]
ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}}
VERDICTS = ("genuine", "suspicious", "counterfeit", "unverifiable")


def visible_check(runtime: Runtime, principal: Principal, check_id: int) -> dict[str, Any]:
    record = runtime.gallery.checks.get(check_id)
    if principal.role == "brand" and (record["brand"] != principal.brand or not record["claimed"]) or \
            principal.role == "pipeline" and record["key_id"] != principal.key_id:
        raise NotFoundError(f"check {check_id} not found")
    return record


@router.get("/v1/checks", response_model=CheckList, responses=ERRORS)
def list_checks(principal: AnyKey, runtime: RuntimeDep,
                brand: str | None = None,
                verdict: Annotated[str | None, Query(max_length=60, description="one or more verdicts, comma-separated",
                                                     examples=["suspicious,counterfeit"])] = None,
                decision: Annotated[str | None, Query(pattern="^(undecided|decided|genuine|counterfeit)$")] = None,
                since: Annotated[str | None, Query(description="ISO 8601 time, inclusive")] = None,
                until: Annotated[str | None, Query(description="ISO 8601 time, exclusive")] = None,
                limit: Annotated[int, Query(ge=1, le=200)] = 50,
                before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="cursor: a previous page's 'next'")] = None,
                ) -> dict:
    """Stored checks, newest first, by brand, verdict, decision state and time."""
    if principal.role == "brand":
        if brand is not None and brand != principal.brand:
            raise ForbiddenError(f"this key is bound to brand {principal.brand!r}, not {brand!r}")
        brand = principal.brand
    where = CheckFilter(brand=brand, verdict=verdict, decision=decision, since=since, until=until,
                        key_id=principal.key_id if principal.role == "pipeline" else None,
                        claimed=True if principal.role == "brand" else None)
    page, cursor = runtime.gallery.checks.list(where, limit=limit, before=before)
    return {"checks": page, "next": cursor}


@router.get("/v1/checks/{check_id}", response_model=StoredCheck, responses=ERRORS)
def get_check(check_id: CheckId, principal: AnyKey, runtime: RuntimeDep) -> dict:
    return visible_check(runtime, principal, check_id)


@router.get("/v1/checks/{check_id}/photos/{index}", response_class=Response,
            responses={**ERRORS, 200: {"content": {"image/*": {}}}})
def check_photo(check_id: CheckId, index: PhotoIndex, principal: AnyKey, runtime: RuntimeDep) -> Response:
    """A checked photo's bytes as they were sent."""
    visible_check(runtime, principal, check_id)
    data = runtime.gallery.checks.photo_bytes(check_id, index)
    return Response(data, media_type=media_type(data), headers={"X-Content-Type-Options": "nosniff"})


@router.get("/v1/checks/{check_id}/photos/{index}/heatmap", response_class=Response,
            responses={**ERRORS, 200: {"content": {"image/png": {}}}})
def check_heatmap(check_id: CheckId, index: PhotoIndex, principal: AnyKey, runtime: RuntimeDep) -> Response:
    """The photo with its region scores and most suspicious box drawn over it (PNG); 404 when it did not align."""
    record = visible_check(runtime, principal, check_id)
    images = record["result"]["images"]
    alignment = images[index].get("alignment") if index < len(images) else None
    if not alignment or not alignment.get("aligned"):
        raise NotFoundError(f"photo {index} of check {check_id} has no heatmap (it was not aligned with a reference)")
    png = render_heatmap(runtime.gallery.checks.photo_bytes(check_id, index), alignment["heatmap"], alignment["suspicious_box"])
    return Response(png, media_type="image/png")


@router.post("/v1/checks/{check_id}/decision", status_code=201, response_model=DecisionRecord, responses=ERRORS)
def decide(check_id: CheckId, body: DecisionCreate, principal: AnyKey, runtime: RuntimeDep) -> dict:
    """Record a reviewer's decision (admin, or the key of the brand the check claims). Append-only: the latest counts."""
    visible_check(runtime, principal, check_id)  # a brand key sees only checks that claim its brand
    if principal.role == "pipeline":
        raise ForbiddenError("decisions need an admin key or the key of the brand the check claims")
    return runtime.gallery.checks.decide(check_id, Decision(body.decision, body.kind, body.note), actor=principal.key_id)


@router.post("/v1/checks/{check_id}/references", status_code=201, response_model=ReferencesCreated, responses=ERRORS)
async def add_to_references(check_id: CheckId, body: ReferencesFromCheck, principal: AnyKey, runtime: RuntimeDep) -> dict:
    """Add the photos of a check confirmed genuine to its brand's references (admin, or the brand's key)."""
    record = visible_check(runtime, principal, check_id)
    if record["brand"] is None:
        raise InvalidInputError(f"check {check_id} names no brand")
    require_brand_access(principal, record["brand"], write=True)
    if record["decision"] != "genuine":
        raise InvalidInputError(f"check {check_id} is not confirmed genuine (its latest decision: {record['decision']})")
    count = len(record["result"]["images"])
    files = [UploadFile(f"check {check_id} photo {i}", runtime.gallery.checks.photo_bytes(check_id, i)) for i in range(count)]
    refs = await run_in_threadpool(runtime.gallery.add_references, record["brand"], files, product=body.product,
                                   actor=principal.key_id)
    return {"references": [r.to_dict() for r in refs]}


@router.post("/v1/brands/{brand}/examples", status_code=201, response_model=ExamplesCreated, responses=ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["files"],
                 "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
async def add_examples(brand: str, request: Request, principal: AnyKey, runtime: RuntimeDep, batcher: BatcherDep,
                       admission: AdmissionDep) -> dict:
    """Genuine listing photos of the brand (admin, or the brand's key): each is checked and stored decided
    genuine, evidence for the brand's own thresholds (POST /v1/brands/{brand}/calibration)."""
    validate_brand_slug(brand)
    require_brand_access(principal, brand, write=True)
    runtime.gallery.store.require_brand(brand)
    admission.admit()
    limits = runtime.gallery.limits
    files, _ = await read_photo_form(request, max_files=limits.max_files_per_check, max_file_bytes=limits.max_file_bytes,
                                     fields=())
    results = [await run_check(runtime, batcher, admission, [f], brand=brand, listing_id=None, key_id=principal.key_id,
                                genuine_example=True) for f in files]
    return {"checks": results}


@router.post("/v1/brands/{brand}/calibration", response_model=BrandCalibration, responses=ERRORS)
async def calibrate_brand(brand: str, principal: AdminKey, runtime: RuntimeDep) -> dict:
    """Refit the brand's thresholds on its genuine evidence (admin): checks decided genuine, else its
    references left out one at a time. Later checks of the brand use them."""
    validate_brand_slug(brand)
    return await run_in_threadpool(BrandCalibrator(runtime.detector).calibrate, brand, actor=principal.key_id)


@router.get("/v1/brands/{brand}/calibration", response_model=CalibrationInfo, responses=ERRORS)
def brand_thresholds(brand: str, principal: AnyKey, runtime: RuntimeDep) -> dict:
    """The thresholds the brand's checks use now: its own, or the model's."""
    validate_brand_slug(brand)
    require_brand_access(principal, brand, write=False)
    runtime.gallery.store.require_brand(brand)
    return runtime.detector.thresholds(brand).info().model_dump()


@router.get("/v1/brands/{brand}/stats", response_model=BrandStats, responses=ERRORS)
def brand_stats(brand: str, principal: AnyKey, runtime: RuntimeDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> dict:
    """Checks claiming the brand per day by verdict, reviewers' decisions by verdict, and its thresholds now."""
    validate_brand_slug(brand)
    if principal.role == "pipeline":
        raise ForbiddenError("brand statistics need an admin key or the brand's own key")
    require_brand_access(principal, brand, write=False)
    runtime.gallery.store.require_brand(brand)
    return {**runtime.gallery.checks.brand_stats(brand, days=days), "calibration": runtime.detector.thresholds(brand).info()}


@router.get("/v1/checks/{check_id}/photos/{index}/thumbnail", response_class=Response,
            responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}})
def check_thumbnail(check_id: CheckId, index: PhotoIndex, principal: AnyKey, runtime: RuntimeDep, request: Request) -> Response:
    """A checked photo at most 256 px on a side (JPEG)."""
    visible_check(runtime, principal, check_id)
    digest = runtime.gallery.checks.photo_digest(check_id, index)
    return thumbnail_response(request, digest, lambda: runtime.gallery.blobs.get(digest))
