"""Request and response bodies of API v1 (apart from storage types)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class NearestReference(BaseModel):
    id: int
    brand: str
    product: str | None
    similarity: float


class ImageResult(BaseModel):
    index: int
    counterfeit_score: float | None
    brand_similarity: float | None
    predicted_brand: str | None
    nearest_references: list[NearestReference]
    flags: list[str]


class ModelInfo(BaseModel):
    name: str
    version: str


class CheckResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "listing_id": "L1", "brand": "acme", "verdict": "counterfeit", "counterfeit_score": 0.93,
        "model": {"name": "zero-shot-efficientnet-lite0", "version": "1.0.0"},
        "images": [{"index": 0, "counterfeit_score": 0.93, "brand_similarity": 0.41, "predicted_brand": "other-brand",
                    "nearest_references": [{"id": 7, "brand": "acme", "product": None, "similarity": 0.41}],
                    "flags": ["brand_mismatch"]}],
        "reasons": ["photo 0 looks like other-brand, not acme (similarity 0.62 vs 0.41)"]}]})
    listing_id: str | None
    brand: str | None
    verdict: Literal["genuine", "suspicious", "counterfeit", "unverifiable"]
    counterfeit_score: float | None = Field(description="in [0, 1], higher is more likely counterfeit; null when unverifiable")
    model: ModelInfo
    images: list[ImageResult]
    reasons: list[str]


class BatchImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base64: str


class BatchListing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listing_id: str | None = Field(default=None, max_length=200)
    brand: str | None = None
    images: list[BatchImage] = Field(min_length=1)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"listings": [{"listing_id": "L1", "brand": "acme", "images": [{"base64": "<base64 of a JPEG>"}]}]}]})
    listings: list[BatchListing] = Field(min_length=1, max_length=64)


class BatchError(BaseModel):
    listing_id: str | None
    error: ErrorDetail


class BatchResponse(BaseModel):
    results: list[CheckResult | BatchError]
