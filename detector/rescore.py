"""Re-score a brand's stored checks against its gallery as it is now, from their stored
embeddings (no photo is embedded again), and report which verdicts changed.

Photos are aligned again from their stored originals when the detector aligns (heatmaps and
regions follow the new references). Checks embedded by another model cannot be re-scored without
re-embedding: they are counted and left as they are.
"""

from __future__ import annotations

from typing import Any

from detector import progress
from detector.brand_calibration import stored_embeddings
from detector.pipeline import Detector
from detector.store import LOCAL_ACTOR

CHUNK = 64  # checks read at once


def rescore_brand(detector: Detector, brand: str, *, actor: str = LOCAL_ACTOR) -> dict[str, Any]:
    gallery = detector.gallery
    gallery.store.require_brand(brand)
    gallery.refresh()
    ids = gallery.checks.ids_of_brand(brand, model=gallery.model)
    other_model = len(gallery.checks.ids_of_brand(brand)) - len(ids)
    changed, unchanged = [], 0
    with progress.bar(total=len(ids), desc=f"re-scoring checks of {brand}") as bar:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
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
            bar.update(len(chunk))
    return {"brand": brand, "rescored": len(changed) + unchanged, "changed": changed, "unchanged": unchanged,
            "skipped_other_model": other_model}

