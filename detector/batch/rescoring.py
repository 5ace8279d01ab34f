"""Re-scoring a brand's stored checks on Ray: each actor opens the gallery once and re-scores its
share of the checks from their stored embeddings (``detector.rescore``); the driver merges the
actors' reports into the one ``cfd checks rescore`` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from detector.batch.scoring import BatchJob

RESCORE_ACTOR = "batch-rescore"


class CheckRescorer:
    def __init__(self, job: BatchJob, brand: str):
        import torch

        from detector.model_folder import load_model
        from detector.runtime import open_runtime

        torch.set_num_threads(job.threads)
        self.brand = brand
        self.runtime = open_runtime(Path(job.data_dir), load_model(job.model, precision=job.precision), reembed=False,
                                    align=job.align, database=job.database)

    def __call__(self, batch: dict[str, Iterable]) -> dict[str, list]:
        from detector.rescore import rescore_checks

        ids = [int(i) for i in batch["check_id"]]
        report = rescore_checks(self.runtime.detector, self.brand, ids, actor=RESCORE_ACTOR)
        changed = {c["check_id"]: c for c in report["changed"]}
        return {"check_id": ids,
                "outcome": [_outcome(i, changed, report) for i in ids],
                "change": [json.dumps(changed[i]) if i in changed else None for i in ids]}


def _outcome(check_id: int, changed: dict, report: dict[str, Any]) -> str:
    if check_id in changed:
        return "changed"
    return "skipped" if check_id in report["skipped"] else "gone" if check_id in report["gone"] else "unchanged"


def merge_reports(brand: str, table: pa.Table | None) -> dict[str, Any]:
    rows = table.to_pylist() if table is not None else []
    changed = sorted((json.loads(r["change"]) for r in rows if r["outcome"] == "changed"), key=lambda c: c["check_id"])
    return {"brand": brand, "rescored": sum(r["outcome"] in ("changed", "unchanged") for r in rows), "changed": changed,
            "unchanged": sum(r["outcome"] == "unchanged" for r in rows),
            "skipped_other_model": sum(r["outcome"] == "skipped" for r in rows)}
