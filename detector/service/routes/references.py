from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from detector.images import media_type
from detector.service.auth import AnyKey, require_brand_access
from detector.service.deps import RuntimeDep
from detector.service.schemas import ErrorBody, ReferenceList, ReferencesCreated
from detector.service.thumbnails import thumbnail_response
from detector.service.uploads import read_photo_form
from detector.store import MAX_ID, validate_brand_slug

router = APIRouter(prefix="/v1/brands/{brand}/references", tags=["references"])
ReferenceId = Annotated[int, Path(ge=1, le=MAX_ID)]
ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                   "product": {"type": "string", "description": "optional product name"}}}}}}}


def _brand_for(principal, runtime, brand: str, *, write: bool) -> str:
    validate_brand_slug(brand)
    require_brand_access(principal, brand, write=write)
    runtime.gallery.store.require_brand(brand)
    return brand


@router.post("", status_code=201, response_model=ReferencesCreated, openapi_extra=UPLOAD_BODY,
             responses={**ERRORS, 400: {"model": ErrorBody}, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}})
async def add_references(brand: str, request: Request, principal: AnyKey, runtime: RuntimeDep) -> dict:
    """Upload authentic reference photos (admin, or the brand's own key). Atomic: one bad file stores nothing."""
    _brand_for(principal, runtime, brand, write=True)
    limits = runtime.gallery.limits
    files, fields = await read_photo_form(request, max_files=limits.max_files_per_upload,
                                          max_file_bytes=limits.max_file_bytes, fields=("product",))
    refs = await run_in_threadpool(runtime.gallery.add_references, brand, files, product=fields.get("product"),
                                   actor=principal.key_id)
    return {"references": [r.to_dict() for r in refs]}


@router.get("", response_model=ReferenceList, responses=ERRORS)
def list_references(brand: str, principal: AnyKey, runtime: RuntimeDep,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    after: Annotated[int | None, Query(ge=0, le=MAX_ID, description="cursor from a previous page's 'next'")] = None,
                    ) -> dict:
    _brand_for(principal, runtime, brand, write=False)
    refs = runtime.gallery.store.list_references(brand, limit=limit + 1, after=after)
    page = refs[:limit]
    return {"references": [r.to_dict() for r in page], "next": page[-1].id if len(refs) > limit else None}


@router.get("/{ref_id}/image", response_class=Response, responses={**ERRORS, 200: {"content": {"image/*": {}}}})
def reference_image(brand: str, ref_id: ReferenceId, principal: AnyKey, runtime: RuntimeDep) -> Response:
    """The original bytes as uploaded."""
    _brand_for(principal, runtime, brand, write=False)
    reference, data = runtime.gallery.reference_image(brand, ref_id)
    return Response(data, media_type=media_type(data),
                    headers={"ETag": f'"{reference.sha256}"', "X-Content-Type-Options": "nosniff"})


@router.get("/{ref_id}/thumbnail", response_class=Response, responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}})
def reference_thumbnail(brand: str, ref_id: ReferenceId, principal: AnyKey, runtime: RuntimeDep, request: Request) -> Response:
    """The reference at most 256 px on a side (JPEG), made once and cached."""
    _brand_for(principal, runtime, brand, write=False)
    reference = runtime.gallery.store.get_reference(brand, ref_id)
    return thumbnail_response(request, reference.sha256, lambda: runtime.gallery.blobs.get(reference.sha256))


@router.delete("/{ref_id}", status_code=204, responses=ERRORS)
async def delete_reference(brand: str, ref_id: ReferenceId, principal: AnyKey, runtime: RuntimeDep) -> Response:
    _brand_for(principal, runtime, brand, write=True)
    await run_in_threadpool(runtime.gallery.delete_reference, brand, ref_id, actor=principal.key_id)
    return Response(status_code=204)
