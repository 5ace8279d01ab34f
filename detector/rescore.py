"""Re-score a brand's stored checks against its gallery as it is now, from their stored
embeddings (no photo is embedded again), and report which verdicts changed.

Photos are aligned again from their stored originals when the detector aligns (heatmaps and
regions follow the new references). Checks embedded by another model cannot be re-scored without
re-embedding: they are counted and left as they are.
"""

from __future__ import annotations

from typing import Any, Callable

from detector import progress
from detector.brand_calibration import stored_embeddings
from detector.pipeline import Detector
from detector.store import LOCAL_ACTOR

CHUNK = 64  # checks read at once


def rescore_brand(detector: Detector, brand: str, *, actor: str = LOCAL_ACTOR) -> dict[str, Any]:
    detector.gallery.store.require_brand(brand)
    ids = detector.gallery.checks.ids_of_brand(brand)
    with progress.bar(total=len(ids), desc=f"re-scoring checks of {brand}") as bar:
        report = rescore_checks(detector, brand, ids, actor=actor, done=bar.update)
    return {"brand": brand, "rescored": len(report["changed"]) + report["unchanged"], "changed": report["changed"],
            "unchanged": report["unchanged"], "skipped_other_model": len(report["skipped"])}


def rescore_checks(detector: Detector, brand: str, ids: list[int], *, actor: str,
                   done: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Re-score the given checks of ``brand`` (a share of them, on a Ray actor); checks embedded by
    another model are skipped, checks deleted meanwhile (pruned) are gone. ``done``: told how many
    checks each chunk finished."""
    gallery = detector.gallery
    gallery.refresh()
    changed, unchanged, skipped, gone = [], 0, [], []
    for start in range(0, len(ids), CHUNK):
        share = ids[start : start + CHUNK]
        models = gallery.checks.models_of(share)
        skipped += [i for i in share if i in models and models[i] != gallery.model]
        gone += [i for i in share if i not in models]
        chunk = [i for i in share if models.get(i) == gallery.model]
        photos = gallery.checks.photos(chunk)
        for check_id in chunk:
            record = gallery.checks.get(check_id)
            records = photos[check_id]  # a stored check has at least one photo
            views = gallery.decode_stored([p.sha256 for p in records]).views if detector.align else None
            version = gallery.store.gallery_version()
            judged = detector.judge(stored_embeddings(records, patch_width=gallery.embedder.patch_record_width),
                                    brand=brand if record["claimed"] else None,  # unclaimed: predicted again
                                    listing_id=record["listing_id"], views=views,
                                    phashes=[p.phash for p in records], check_id=check_id)
            gallery.checks.update_result(check_id, judged.result, gallery_version=version, actor=actor,
                                         old_verdict=record["verdict"])
            if judged.result.verdict != record["verdict"]:
                changed.append({"check_id": check_id, "listing_id": record["listing_id"], "before": record["verdict"],
                                "after": judged.result.verdict, "score_before": record["counterfeit_score"],
                                "score_after": judged.result.counterfeit_score})
            else:
                unchanged += 1
        if done is not None:
            done(len(share))
    return {"changed": changed, "unchanged": unchanged, "skipped": skipped, "gone": gone}

