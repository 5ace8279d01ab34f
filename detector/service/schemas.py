"""Request and response bodies of API v1 (apart from storage types)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from detector.checks import KIND_PATTERN, MAX_NOTE_LENGTH
from detector.results import CalibrationInfo, CheckResult, ModelInfo, Verdict


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


class DecisionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"decision": "counterfeit", "kind": "logo", "note": "wrong typeface on the lid"}]})
    decision: Literal["genuine", "counterfeit"]
    kind: str | None = Field(default=None, pattern=KIND_PATTERN, description="a counterfeit's kind (default: reviewed)")
    note: str | None = Field(default=None, max_length=MAX_NOTE_LENGTH)


class DecisionRecord(BaseModel):
    id: int
    check_id: int
    decision: Literal["genuine", "counterfeit"]
    kind: str | None
    note: str | None
    key_id: str
    created_at: str


class StoredCheck(BaseModel):
    id: int
    listing_id: str | None
    brand: str | None = Field(description="the claimed brand, or the predicted one when none was claimed")
    claimed: bool = Field(description="whether the listing claimed the brand")
    verdict: Verdict
    counterfeit_score: float | None
    model: ModelInfo
    gallery_version: int
    key_id: str = Field(description="the API key that asked (local: a cfd command on the machine)")
    source: Literal["check", "example"]
    created_at: str
    rescored_at: str | None
    decision: Literal["genuine", "counterfeit"] | None = Field(description="the latest decision; null: undecided")
    result: CheckResult
    decisions: list[DecisionRecord] | None = Field(default=None, description="every decision, oldest first (single check only)")


class CheckList(BaseModel):
    checks: list[StoredCheck]
    next: int | None = Field(description="pass as 'before' for the next page; null on the last")


class ReferencesFromCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product: str | None = Field(default=None, max_length=200)


class ExamplesCreated(BaseModel):
    checks: list[CheckResult]


class BrandCalibration(BaseModel):
    model_config = ConfigDict(extra="allow")
    brand: str
    calibration: CalibrationInfo
    targets: dict[str, float]
    methods: dict[str, str]
    in_sample: dict[str, float] = Field(description="the share of the evidence flagged at the new thresholds")
    model_thresholds: dict[str, Any] = Field(description="the model's thresholds and what they flag of the same evidence")


class DayCounts(BaseModel):
    date: str
    genuine: int
    suspicious: int
    counterfeit: int
    unverifiable: int


class BrandStats(BaseModel):
    brand: str
    days: list[DayCounts] = Field(description="checks claiming the brand, per UTC day with any, by verdict")
    outcomes: dict[str, dict[str, int]] = Field(description="by verdict: how many reviewers decided genuine, "
                                                            "counterfeit, or have not decided")
    calibration: CalibrationInfo


class Me(BaseModel):
    key_id: str
    role: Literal["admin", "brand", "pipeline"]
    brand: str | None


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"url": "https://trust.example.com/hooks/cfd", "min_verdict": "suspicious", "brand": None}]})
    url: str = Field(max_length=2000)
    min_verdict: Literal["genuine", "unverifiable", "suspicious", "counterfeit"] = "suspicious"
    brand: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")


class Webhook(BaseModel):
    id: str
    url: str
    min_verdict: str
    brand: str | None
    created_at: str


class WebhookCreated(Webhook):
    secret: str = Field(description="the HMAC-SHA256 signing key; shown only now")


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class DeliveryAttempt(BaseModel):
    attempt: int
    at: str
    status: int | None
    error: str | None


class Delivery(BaseModel):
    id: int
    check_id: int
    state: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    created_at: str
    log: list[DeliveryAttempt]


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


class AuditEntry(BaseModel):
    id: int
    at: str
    key_id: str
    action: str
    target: str
    detail: dict[str, Any]


class AuditList(BaseModel):
    entries: list[AuditEntry]
    next: int | None
