"""Resumable output: each finished batch of scored rows is a Parquet file in ``<output>.parts/``
(written to a temporary file, fsynced, renamed), so a job stopped at any point resumes without
scoring those rows again. ``finish`` joins the parts, in input order, into the output."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from detector.errors import InvalidInputError
from detector.fsutil import atomic_write_bytes

MANIFEST = "job.json"


class ResultParts:
    def __init__(self, output: Path, *, input_digest: str, restart: bool = False):
        self.output = Path(output)
        self.folder = self.output.with_name(self.output.name + ".parts")
        manifest = self.folder / MANIFEST
        if self.folder.exists() and restart:
            shutil.rmtree(self.folder)
        if manifest.is_file():
            made_for = json.loads(manifest.read_text()).get("input_sha256")
            if made_for != input_digest:
                raise InvalidInputError(f"{self.folder} holds the results of another input; pass --restart to score "
                                        "this one from the start")
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(manifest, json.dumps({"input_sha256": input_digest}).encode())
        for leftover in self.folder.glob(".part-*.tmp"):  # a part being written when the job stopped
            leftover.unlink()

    def _parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet"))

    def done_rows(self) -> set[int]:
        return {row for part in self._parts() for row in pq.read_table(part, columns=["row"]).column("row").to_pylist()}

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            atomic_write_bytes(self.folder / f"part-{uuid.uuid4().hex}.parquet", _parquet_bytes(table))

    def finish(self) -> int:
        """Join the parts into the output (atomically), drop the parts; returns the rows written."""
        parts = self._parts()
        table = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None
        if table is None:
            raise InvalidInputError("nothing was scored")
        table = table.sort_by("row")
        atomic_write_bytes(self.output, _parquet_bytes(table))
        shutil.rmtree(self.folder)
        return table.num_rows


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()
