"""Scoring listings in bulk: what one Ray actor (or the plain in-process loop) does.

The actor opens the model and the gallery once, then checks listing after listing through
``Detector.check``, the API's own path: each scored listing is stored as a check (key
``batch:<job>``) and its row carries the API's ``CheckResult`` as JSON.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from detector.batch.listings import Listing
from detector.errors import DetectorError, ImageTooLargeError, InvalidInputError
from detector.gallery import UploadFile

OUTPUT_SCHEMA = pa.schema([
    ("row", pa.int64()), ("listing_id", pa.string()), ("brand", pa.string()), ("check_id", pa.int64()),
    ("verdict", pa.string()), ("counterfeit_score", pa.float64()), ("result", pa.string()), ("error", pa.string()),
])
PATH_SEPARATOR = "\n"  # photos of one listing travel as one string: Ray blocks stay flat columns


@dataclass(frozen=True)
class BatchJob:
    """What every actor needs to open the gallery as the command line would."""

    data_dir: str
    database: str | None
    model: str | None
    precision: str
    align: bool
    job_id: str  # the input's digest, short: stored checks are asked for by key batch:<job_id>
    threads: int = 1  # torch threads per actor


def listing_item(listing: Listing) -> dict[str, Any]:
    return {"row": listing.row, "listing_id": listing.listing_id or "", "brand": listing.brand or "",
            "photos": PATH_SEPARATOR.join(listing.photos)}


def _text(value) -> str | None:
    return None if value is None or str(value) == "" else str(value)


class ListingScorer:
    """Callable on a batch of listing items (a dict of columns), as Ray Data's ``map_batches`` wants."""

    def __init__(self, job: BatchJob):
        import torch

        from detector.memory import keep_freed_memory
        from detector.model_folder import load_model
        from detector.runtime import open_runtime

        keep_freed_memory()  # an actor is a process of its own
        torch.set_num_threads(job.threads)
        self.job = job
        model = load_model(job.model, precision=job.precision)
        # reembed=False: a bulk job never swaps the gallery's model under a running service
        self.runtime = open_runtime(Path(job.data_dir), model, reembed=False, align=job.align, database=job.database)
        self.max_file_bytes = self.runtime.gallery.limits.max_file_bytes

    def __call__(self, batch: dict[str, Iterable]) -> dict[str, list]:
        rows = [self.score(int(row), _text(listing_id), _text(brand), [p for p in str(photos).split(PATH_SEPARATOR) if p])
                for row, listing_id, brand, photos in zip(batch["row"], batch["listing_id"], batch["brand"], batch["photos"])]
        return {name: [r[name] for r in rows] for name in OUTPUT_SCHEMA.names}

    def score(self, row: int, listing_id: str | None, brand: str | None, photos: list[str]) -> dict[str, Any]:
        out = {"row": row, "listing_id": listing_id, "brand": brand, "check_id": None, "verdict": None,
               "counterfeit_score": None, "result": None, "error": None}
        try:
            files = [UploadFile(path, self._read(path)) for path in photos]
            result = self.runtime.detector.check(files, brand=brand, listing_id=listing_id, key_id=f"batch:{self.job.job_id}")
        except DetectorError as exc:
            out["error"] = f"{exc.code}: {exc.message}"
            return out
        out.update(brand=result.brand, check_id=result.check_id, verdict=result.verdict,
                   counterfeit_score=result.counterfeit_score, result=result.model_dump_json())
        return out

    def _read(self, path: str) -> bytes:
        if not os.path.isabs(path):
            raise InvalidInputError(f"{path}: only local paths and file:// URIs can be read")
        try:
            if os.path.getsize(path) > self.max_file_bytes:
                raise ImageTooLargeError(f"{path} is larger than {self.max_file_bytes} bytes")
            with open(path, "rb") as handle:
                return handle.read(self.max_file_bytes + 1)
        except OSError as exc:
            raise InvalidInputError(f"{path} cannot be read ({exc.strerror})") from None

    def close(self) -> None:
        self.runtime.close()


def score_in_process(items: list[dict[str, Any]], job: BatchJob, *, batch_size: int) -> Iterable[pa.Table]:
    """The plain single-process loop: the same scorer, no Ray (``--no-ray``, and the benchmark's baseline)."""
    scorer = ListingScorer(job)
    try:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            yield pa.Table.from_pydict(scorer({k: [i[k] for i in chunk] for k in chunk[0]}), schema=OUTPUT_SCHEMA)
    finally:
        scorer.close()
