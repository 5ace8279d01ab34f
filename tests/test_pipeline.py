from __future__ import annotations

from dataclasses import replace

import pytest

from detector.errors import InvalidInputError
from detector.gallery import UploadFile
from detector.model_folder import Calibration
from detector.pipeline import Detector
from tests.synthetic import product_photo


def _listing(brand, seeds):
    return [UploadFile(f"p{s}.png", product_photo(brand, 100 + s)) for s in seeds]


def test_genuine_scores_below_other_brand(detector):
    genuine = detector.check(_listing("acme", [0, 1]), brand="acme", listing_id="L1")
    fake = detector.check(_listing("zenit", [0]), brand="acme", listing_id="L2")
    assert genuine.listing_id == "L1" and genuine.brand == "acme"
    assert 0.0 <= genuine.counterfeit_score < fake.counterfeit_score <= 1.0
    assert genuine.verdict in ("genuine", "suspicious")
    assert fake.images[0].flags == ["brand_mismatch", "unaligned"]  # another product: it cannot align either
    assert fake.images[0].predicted_brand == "zenit"
    assert any("looks like zenit, not acme" in r for r in fake.reasons)
    assert fake.verdict in ("suspicious", "counterfeit")


def test_result_shape(detector, zero_shot):
    result = detector.check(_listing("acme", [0]), brand="acme").model_dump()
    assert result["model"] == {"name": zero_shot.name, "version": zero_shot.version}
    image = result["images"][0]
    assert set(image) == {"index", "counterfeit_score", "brand_similarity", "predicted_brand", "nearest_references", "flags",
                          "alignment", "known_counterfeit"}
    assert image["known_counterfeit"] is None
    assert result["check_id"] >= 1  # on record
    assert result["calibration"] == {"scope": "model", "suspicious_threshold": zero_shot.calibration.suspicious_threshold,
                                     "counterfeit_threshold": zero_shot.calibration.counterfeit_threshold,
                                     "source": None, "genuine_photos": None, "fitted_at": None}
    assert set(image["alignment"]) == {"aligned", "reference_id", "inliers", "inlier_ratio", "method", "correlation",
                                       "failure", "heatmap", "suspicious_box", "region", "difference"}
    nearest = image["nearest_references"]
    assert nearest and all(n["brand"] == "acme" for n in nearest)
    assert [n["similarity"] for n in nearest] == sorted((n["similarity"] for n in nearest), reverse=True)
    assert result["reasons"]


def test_unknown_brand_is_unverifiable_with_prediction(detector):
    result = detector.check(_listing("zenit", [0]), brand="nobody")
    assert result.verdict == "unverifiable" and result.counterfeit_score is None
    assert result.images[0].predicted_brand == "zenit"
    assert "unknown" in result.reasons[0]


def test_brand_without_references_is_unverifiable(detector):
    detector.gallery.create_brand("empty")
    result = detector.check(_listing("acme", [0]), brand="empty")
    assert result.verdict == "unverifiable"
    assert "no reference photos" in result.reasons[0]


def test_no_claim_uses_predicted_brand(detector):
    result = detector.check(_listing("zenit", [0, 1]))
    assert result.brand == "zenit"
    assert result.verdict != "unverifiable"


def test_photo_count_limits(detector):
    with pytest.raises(InvalidInputError):
        detector.check([], brand="acme")
    with pytest.raises(InvalidInputError, match="16"):
        detector.check(_listing("acme", range(17)), brand="acme")


def test_fusion_and_thresholds():
    calibration = Calibration(features=("brand_similarity",), weights=(-10.0,), bias=5.0,
                              suspicious_threshold=0.4, counterfeit_threshold=0.8)
    low, high = calibration.fuse({"brand_similarity": 0.9}), calibration.fuse({"brand_similarity": 0.2})
    assert low < 0.5 < high
    assert calibration.verdict(0.39) == "genuine"
    assert calibration.verdict(0.4) == "suspicious"
    assert calibration.verdict(0.8) == "counterfeit"


def test_reasons_never_contradict_a_genuine_verdict(zero_shot, populated):
    """A photo that looks like another brand can still score below the threshold; then the reasons
    say so, never that it matches the claimed brand closely."""
    lenient = replace(zero_shot, calibration=replace(zero_shot.calibration, suspicious_threshold=1.0, counterfeit_threshold=1.0))
    result = Detector(lenient, populated).check(_listing("zenit", [0]), brand="acme")
    assert result.verdict == "genuine" and "brand_mismatch" in result.images[0].flags
    assert not any("matches acme references closely" in r for r in result.reasons), result.reasons
    assert any("stays below the suspicious threshold" in r for r in result.reasons)
    plain = Detector(lenient, populated).check(_listing("acme", [0]), brand="acme")
    assert plain.verdict == "genuine" and any("matches acme references closely" in r for r in plain.reasons)


def test_exact_and_approximate_indexes_give_the_same_verdicts(zero_shot, populated):
    """The approximate other-brand index (forced here on a small gallery) changes no verdict: its
    candidates are re-scored with the exact vectors."""
    from detector.index import GalleryIndex, IndexRecipe

    forced = IndexRecipe(approximate_from=1, pca_dim=6, lists_per_sqrt=0.5, min_lists=2)
    detector = Detector(zero_shot, populated)
    listings = [(_listing("acme", [0, 1]), "acme"), (_listing("zenit", [0]), "acme"), (_listing("acme", [2]), "zenit"),
                (_listing("zenit", [3]), None)]
    exact = [detector.check(files, brand=brand) for files, brand in listings]
    populated.index = GalleryIndex.from_vectors(populated.index.vectors, recipe=forced)
    assert populated.index.approximate
    approximate = [detector.check(files, brand=brand) for files, brand in listings]
    for a, b in zip(exact, approximate):
        assert (a.verdict, a.brand) == (b.verdict, b.brand)
        assert a.counterfeit_score == pytest.approx(b.counterfeit_score, abs=1e-6)
        for x, y in zip(a.images, b.images):
            assert (x.predicted_brand, x.flags) == (y.predicted_brand, y.flags)
            assert [r.id for r in x.nearest_references] == [r.id for r in y.nearest_references]
