"""Request and response bodies of API v1 (apart from storage types)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from detector.results import CheckResult


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_image"])
    message: str = Field(examples=["file 'a.jpg': corrupt or truncated image"])


class ErrorBody(BaseModel):
    error: ErrorDetail


class BrandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"brand": "acme", "display_name": "ACME Corp"}]})
    brand: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    display_name: str | None = Field(default=None, max_length=200)


class Brand(BaseModel):
    brand: str
    display_name: str
    reference_count: int


class BrandList(BaseModel):
    brands: list[Brand]


class Reference(BaseModel):
    id: int
    brand: str
    product: str | None
    sha256: str
    width: int
    height: int
    created_at: str
    duplicate: bool = False


class ReferenceList(BaseModel):
    references: list[Reference]
    next: int | None = None


class ReferencesCreated(BaseModel):
    references: list[Reference]


class BatchImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base64: str


class BatchListing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listing_id: str | None = Field(default=None, max_length=200)
    brand: str | None = None
    images: list[BatchImage]  # an empty listing gets its own error entry; the others still run


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"listings": [{"listing_id": "L1", "brand": "acme", "images": [{"base64": "<base64 of a JPEG>"}]}]}]})
    listings: list[BatchListing] = Field(min_length=1)  # at most Limits.max_batch_listings, checked by the route


class BatchError(BaseModel):
    listing_id: str | None
    error: ErrorDetail


class BatchResponse(BaseModel):
    results: list[CheckResult | BatchError]
