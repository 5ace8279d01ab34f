"""The typed result of a listing check (``CheckResult``): what ``Detector.check`` returns, the CLI
prints and API v1 answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

GENUINE, SUSPICIOUS, COUNTERFEIT, UNVERIFIABLE = "genuine", "suspicious", "counterfeit", "unverifiable"
Verdict = Literal["genuine", "suspicious", "counterfeit", "unverifiable"]


def verdict_at(score: float, *, suspicious: float, counterfeit: float) -> str:
    """The verdict of a score at two thresholds (a score at a threshold reaches it)."""
    if score >= counterfeit:
        return COUNTERFEIT
    if score >= suspicious:
        return SUSPICIOUS
    return GENUINE


class NearestReference(BaseModel):
    id: int
    brand: str
    product: str | None
    similarity: float


class AlignmentResult(BaseModel):
    """The photo against its best-aligned reference of the claimed brand."""

    aligned: bool
    reference_id: int | None = Field(description="the reference with the most geometric inliers")
    inliers: int
    inlier_ratio: float
    method: str | None = Field(default=None, description="how the photo was aligned: keypoints (geometric inliers), or dense (a "
                                           "search over rotations and scales, refined by ECC) where keypoints did not agree")
    correlation: float | None = Field(default=None, description="colour correlation of the aligned photo with the reference inside "
                                                  "the product region")
    failure: str | None = Field(description="why the photo is not aligned (then its score rests on the embedding signals)")
    heatmap: list[list[float]] | None = Field(
        description="rows x columns over the photo: how much each region differs from the reference, 0 (not beyond "
                    "a genuine photo's usual differences) to 1; 0 outside the compared product")
    suspicious_box: list[int] | None = Field(description="[x0, y0, x1, y1] in the photo's pixels: the most different region")
    region: str | None = Field(description="where that region sits on the product")
    difference: str | None = Field(description="what differs most there: colour or structure")


class KnownCounterfeit(BaseModel):
    """A photo a reviewer confirmed counterfeit that this photo nearly duplicates."""

    check_id: int
    photo: int
    similarity: float = Field(description="cosine similarity of the embeddings")
    hash_distance: int = Field(description="bits in which the 64-bit perceptual hashes differ")


class ImageResult(BaseModel):
    index: int
    counterfeit_score: float | None
    brand_similarity: float | None
    predicted_brand: str | None
    nearest_references: list[NearestReference]
    flags: list[str]
    alignment: AlignmentResult | None = Field(default=None, description="null when the photo was not verified by alignment")
    known_counterfeit: KnownCounterfeit | None = Field(default=None, description="set when the photo is flagged known_counterfeit")


class ModelInfo(BaseModel):
    name: str
    version: str


class CalibrationInfo(BaseModel):
    """The thresholds the verdict used: the model's, or the brand's own (refitted on its genuine evidence)."""

    scope: Literal["model", "brand"]
    suspicious_threshold: float
    counterfeit_threshold: float
    source: str | None = Field(default=None, description="for a brand: what its thresholds were fitted on")
    genuine_photos: int | None = None
    fitted_at: str | None = None


class CheckResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "listing_id": "L1", "brand": "acme", "verdict": "counterfeit", "counterfeit_score": 0.93,
        "model": {"name": "zero-shot-efficientnet-lite0", "version": "1.0.0"},
        "images": [{"index": 0, "counterfeit_score": 0.93, "brand_similarity": 0.41, "predicted_brand": "other-brand",
                    "nearest_references": [{"id": 7, "brand": "acme", "product": None, "similarity": 0.41}],
                    "flags": ["brand_mismatch"]}],
        "reasons": ["photo 0 looks like other-brand, not acme (similarity 0.62 vs 0.41)"]}]})
    check_id: int | None = Field(default=None, description="the stored check (GET /v1/checks/{id}); null when not stored")
    listing_id: str | None
    brand: str | None
    verdict: Verdict = Field(description="from the score and the thresholds in 'calibration'; counterfeit whatever the "
                                         "score when a photo is a near-duplicate of one a reviewer confirmed counterfeit")
    counterfeit_score: float | None = Field(description="in [0, 1], higher is more likely counterfeit; null when unverifiable")
    model: ModelInfo
    calibration: CalibrationInfo | None = Field(default=None, description="null when unverifiable")
    images: list[ImageResult]
    reasons: list[str]
