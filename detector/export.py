"""``cfd export decisions``: reviewers' decided photos in the dataset layout, so that ``cfd train``
and ``cfd evaluate`` use them directly:

    <out>/<brand>/references/ref-<id>.<ext>              the brand's references now
    <out>/<brand>/genuine/check-<id>-<photo>.<ext>       photos of checks decided genuine
    <out>/<brand>/counterfeit/<kind>/check-<id>-<photo>.<ext>  ... decided counterfeit, by kind

The latest decision of each check counts. Files keep their stored bytes (formats the dataset
reader does not take are written as PNG); exporting again overwrites the same names.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from detector import progress
from detector.blobs import BlobStore
from detector.checks import CheckLog
from detector.errors import InvalidInputError
from detector.evaluation.dataset import IMAGE_SUFFIXES
from detector.fsutil import atomic_write_bytes
from detector.images import SUFFIXES, media_type
from detector.store import Store


def export_decisions(store: Store, blobs: BlobStore, checks: CheckLog, out: Path, *, brand: str | None = None) -> dict[str, Any]:
    decided = [c for c in checks.decided(brand=brand) if c["brand"] is not None]
    if not decided:
        raise InvalidInputError("no decided checks to export" + (f" for brand {brand}" if brand else ""))
    photos = checks.photos([c["id"] for c in decided])
    written: Counter = Counter()
    brands = sorted({c["brand"] for c in decided})
    with progress.bar(total=len(decided), desc="exporting decided checks") as bar:
        for check in decided:
            folder = out / check["brand"] / ("genuine" if check["decision"] == "genuine" else f"counterfeit/{check['kind']}")
            for photo in photos.get(check["id"], []):
                _write(folder / f"check-{check['id']}-{photo.index}", blobs.get(photo.sha256))
                written[check["decision"]] += 1
            bar.update(1)
    for name in brands:
        if not store.brand_exists(name):
            continue
        after = 0
        while page := store.list_references(name, limit=500, after=after):
            for reference in page:
                _write(out / name / "references" / f"ref-{reference.id}", blobs.get(reference.sha256))
                written["references"] += 1
            after = page[-1].id
    return {"out": str(out), "brands": brands, "checks": len(decided), "genuine_photos": written["genuine"],
            "counterfeit_photos": written["counterfeit"], "references": written["references"]}


def _write(stem: Path, data: bytes) -> None:
    suffix = SUFFIXES.get(media_type(data))
    if suffix not in IMAGE_SUFFIXES:
        with Image.open(io.BytesIO(data)) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
        data, suffix = buffer.getvalue(), ".png"
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(stem.with_name(stem.name + suffix), data)
