from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from detector.service.auth import AdminKey, AnyKey
from detector.service.deps import RuntimeDep
from detector.service.schemas import Brand, BrandCreate, BrandList, ErrorBody
from detector.store import validate_brand_slug

router = APIRouter(prefix="/v1/brands", tags=["brands"])
ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}


@router.post("", status_code=201, response_model=Brand, responses={**ERRORS, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}})
def create_brand(body: BrandCreate, principal: AdminKey, runtime: RuntimeDep) -> dict:
    """Create a brand (admin). 409 if it exists."""
    return runtime.gallery.create_brand(body.brand, body.display_name, actor=principal.key_id)


@router.get("", response_model=BrandList, responses=ERRORS)
def list_brands(principal: AnyKey, runtime: RuntimeDep) -> dict:
    """Every brand; a brand key sees only its own."""
    brands = runtime.gallery.store.list_brands()
    return {"brands": [b for b in brands if principal.role != "brand" or b["brand"] == principal.brand]}


@router.delete("/{brand}", status_code=204, responses={**ERRORS, 404: {"model": ErrorBody}})
async def delete_brand(brand: str, principal: AdminKey, runtime: RuntimeDep) -> Response:
    """Delete a brand and all its references (admin)."""
    validate_brand_slug(brand)
    await run_in_threadpool(runtime.gallery.delete_brand, brand, actor=principal.key_id)
    return Response(status_code=204)
