"""The two bulk jobs behind ``cfd batch``: score a table of listings, re-score a brand's stored checks."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from detector import progress
from detector.batch.listings import input_digest, read_listings
from detector.batch.parts import ResultParts
from detector.batch.ray_runner import map_with_actors, start_ray, stop_ray
from detector.batch.rescoring import CheckRescorer, merge_reports
from detector.batch.scoring import OUTPUT_SCHEMA, BatchJob, ListingScorer, listing_item, score_in_process
from detector.blobs import BlobStore
from detector.checks import CheckLog
from detector.datalock import DataDirLock
from detector.errors import InvalidInputError
from detector.gallery import IMAGES_DIR
from detector.store import Store, store_location

log = logging.getLogger(__name__)


def _cpus_per_actor(actors: int) -> float:
    return max(1.0, (os.cpu_count() or 1) / actors)


def score_listings(input_path: Path, output: Path, job: BatchJob, *, ray_address: str | None, use_ray: bool = True,
                   actors: int = 1, batch_size: int = 8, restart: bool = False) -> dict[str, Any]:
    if output.suffix != ".parquet":
        raise InvalidInputError("--output must name a .parquet file")
    listings = read_listings(input_path)
    digest = input_digest(input_path)
    job = replace(job, job_id=digest[:12], threads=max(1, int(_cpus_per_actor(actors))))
    parts = ResultParts(output, input_digest=digest, restart=restart)
    done = parts.done_rows()
    pending = [listing_item(listing) for listing in listings if listing.row not in done]
    if done:
        log.info("resuming: %d of %d listings were scored before", len(done), len(listings))
    started = time.perf_counter()
    first_batch: tuple[float, int] | None = None  # when the first batch was written, and its rows: start-up against steady state
    if pending:
        if use_ray:
            start_ray(ray_address, cpus=os.cpu_count() or 1)
        try:
            batches = map_with_actors(pending, ListingScorer, {"job": job}, actors=actors, cpus_per_actor=_cpus_per_actor(actors),
                                      batch_size=batch_size) if use_ray else score_in_process(pending, job, batch_size=batch_size)
            with progress.bar(total=len(listings), initial=len(done), desc="scoring listings", unit="listing") as bar:
                for table in batches:
                    parts.write(table.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA))
                    bar.update(table.num_rows)
                    first_batch = first_batch or (time.perf_counter(), table.num_rows)
                    log.info("scored %d of %d listings", bar.n, len(listings))
        finally:
            if use_ray:
                stop_ray()
    ended = time.perf_counter()
    seconds = ended - started
    steady = None
    if first_batch is not None and ended > first_batch[0] and len(pending) > first_batch[1]:
        steady = round((len(pending) - first_batch[1]) / (ended - first_batch[0]), 2)
    rows = parts.finish()
    table = pq.read_table(output, columns=["verdict", "error"])
    verdicts = Counter(v for v in table.column("verdict").to_pylist() if v is not None)
    return {"output": str(output), "listings": rows, "scored_before": len(done), "scored_now": len(pending),
            "errors": sum(e is not None for e in table.column("error").to_pylist()), "verdicts": dict(sorted(verdicts.items())),
            "seconds": round(seconds, 2), "listings_per_second": round(len(pending) / seconds, 2) if pending else None,
            "first_batch_after_s": round(first_batch[0] - started, 2) if first_batch else None,
            "listings_per_second_after_first_batch": steady,
            "checks_key": f"batch:{job.job_id}"}


def rescore_brand_checks(brand: str, job: BatchJob, *, ray_address: str | None, actors: int = 1,
                         batch_size: int = 16) -> dict[str, Any]:
    """Every stored check of ``brand``, re-scored from its stored embeddings by an actor pool."""
    store = Store(store_location(job.data_dir, job.database))
    try:
        store.require_brand(brand)
        ids = CheckLog(store, BlobStore(Path(job.data_dir) / IMAGES_DIR), DataDirLock(Path(job.data_dir))).ids_of_brand(brand)
    finally:
        store.close()
    job = replace(job, threads=max(1, int(_cpus_per_actor(actors))))
    reports = []
    if ids:
        start_ray(ray_address, cpus=os.cpu_count() or 1)
        try:
            with progress.bar(total=len(ids), desc=f"re-scoring checks of {brand}", unit="check") as bar:
                for table in map_with_actors([{"check_id": i} for i in ids], CheckRescorer, {"job": job, "brand": brand},
                                             actors=actors, cpus_per_actor=_cpus_per_actor(actors), batch_size=batch_size):
                    reports.append(table)
                    bar.update(table.num_rows)
        finally:
            stop_ray()
    return merge_reports(brand, pa.concat_tables(reports) if reports else None)
