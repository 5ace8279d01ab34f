"""Bulk scoring on Ray Data (``cfd batch score`` / ``cfd batch rescore``): a real local Ray instance,
run in a network namespace whose only interface is loopback, with a record of every socket it opened."""

from __future__ import annotations

import csv
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from detector.batch.listings import read_listings
from detector.batch.parts import ResultParts
from detector.errors import InvalidInputError
from detector.gallery import Gallery, UploadFile
from detector.store import DB_FILE, Store
from tests.loopback_only import in_loopback_namespace
from tests.synthetic import product_photo

CFD = str(Path(sys.executable).parent / "cfd")
ROOT = Path(__file__).resolve().parents[1]  # where ``python -m tests.loopback_only`` finds its module


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, zero_shot, embedder):
    """A data directory with two brands' references, and a folder of listing photos."""
    root = tmp_path_factory.mktemp("batch")
    gallery = Gallery(root / "var", embedder=embedder, model_fingerprint=f"{zero_shot.fingerprint}-{embedder.precision}").open()
    for brand in ("acme", "zenit"):
        gallery.create_brand(brand)
        gallery.add_references(brand, [UploadFile(f"{brand}{i}.png", product_photo(brand, i)) for i in range(3)])
    gallery.close()
    photos = root / "photos"
    photos.mkdir()
    for brand in ("acme", "zenit"):
        for seed in range(100, 130):
            (photos / f"{brand}-{seed}.png").write_bytes(product_photo(brand, seed))
    return root


def _write_listings(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["listing_id", "brand", "photos"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _good_rows(count: int) -> list[dict]:
    return [{"listing_id": f"L{i}", "brand": "acme" if i % 3 else "",
             "photos": f"photos/{'acme' if i % 2 else 'zenit'}-{100 + i % 30}.png"
                       + (f"|photos/acme-{101 + i % 29}.png" if i % 4 == 0 else "")} for i in range(count)]


def _run_confined(catalogue: Path, *args: str, record: Path, timeout: float = 300) -> dict:
    command = in_loopback_namespace([CFD, "batch", *args, "--data-dir", str(catalogue / "var"), "-q"], record)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _loopback(address: str) -> bool:
    host = address.split(" ", 1)[1].rsplit(":", 1)[0].strip("[]")
    ip = ipaddress.ip_address(host)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def _assert_confined(record: Path) -> None:
    seen = json.loads(record.read_text())
    assert seen["interfaces"] == ["lo"]
    assert seen["sockets"], "Ray opened no socket: it did not run"
    assert [s for s in seen["sockets"] if not _loopback(s)] == []


def test_batch_scoring_on_ray_writes_the_api_result_of_every_listing(catalogue, tmp_path):
    rows = _good_rows(8) + [
        {"listing_id": "unknown-brand", "brand": "nobody", "photos": "photos/acme-100.png"},
        {"listing_id": "missing-photo", "brand": "acme", "photos": "photos/none.png"},
        {"listing_id": "remote-photo", "brand": "acme", "photos": "https://example.invalid/p.jpg"},
        {"listing_id": "no-photo", "brand": "acme", "photos": ""},
    ]
    listings = _write_listings(catalogue / "listings.csv", rows)
    output = tmp_path / "results.parquet"
    report = _run_confined(catalogue, "score", "--input", str(listings), "--output", str(output), "--actors", "2",
                           "--no-alignment", record=tmp_path / "sockets.json")
    _assert_confined(tmp_path / "sockets.json")
    assert report["listings"] == len(rows) and report["errors"] == 3 and report["scored_now"] == len(rows)
    table = pq.read_table(output).to_pylist()
    assert [r["row"] for r in table] == list(range(len(rows)))
    assert [r["listing_id"] for r in table] == [r["listing_id"] for r in rows]
    store = Store(catalogue / "var" / DB_FILE)
    try:
        for scored in table[:9]:
            assert scored["error"] is None and scored["verdict"] in ("genuine", "suspicious", "counterfeit", "unverifiable")
            stored = json.loads(store.query("SELECT result FROM checks WHERE id = ?", (scored["check_id"],))[0][0])
            assert json.loads(scored["result"]) == stored  # the API's CheckResult, as stored
            assert stored["listing_id"] == scored["listing_id"] and scored["counterfeit_score"] == stored["counterfeit_score"]
        keys = {k for (k,) in store.query("SELECT DISTINCT key_id FROM checks")}
        assert keys == {report["checks_key"]}
    finally:
        store.close()
    assert table[8]["verdict"] == "unverifiable"  # as the API answers a listing claiming an unknown brand
    errors = {r["listing_id"]: r["error"] for r in table[9:]}
    assert "cannot be read" in errors["missing-photo"] and "file:// URIs" in errors["remote-photo"]
    assert errors["no-photo"].startswith("validation_error")
    assert all(r["check_id"] is None and r["verdict"] is None for r in table[9:])


def test_an_interrupted_job_resumes_without_scoring_finished_rows_again(catalogue, tmp_path):
    rows = _good_rows(60)
    listings = _write_listings(tmp_path / "many.csv", rows)
    for row in rows:  # photos relative to this input's folder
        row["photos"] = "|".join(str(catalogue / p) for p in row["photos"].split("|"))
    _write_listings(listings, rows)
    output = tmp_path / "results.parquet"
    parts = tmp_path / "results.parquet.parts"
    args = ["batch", "score", "--input", str(listings), "--output", str(output), "--batch-size", "2",
            "--data-dir", str(catalogue / "var"), "-q"]
    job = subprocess.Popen(in_loopback_namespace([CFD, *args], tmp_path / "first.json"), start_new_session=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(parts.glob("part-*.parquet")) and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)
    assert not output.exists(), "the job finished before it could be interrupted"
    finished = ResultParts(output, input_digest=json.loads((parts / "job.json").read_text())["input_sha256"]).done_rows()
    assert 0 < len(finished) < len(rows)

    report = _run_confined(catalogue, "score", "--input", str(listings), "--output", str(output), "--batch-size", "2",
                           record=tmp_path / "second.json")
    assert report["scored_before"] == len(finished) and report["scored_now"] == len(rows) - len(finished)
    table = pq.read_table(output)
    assert table.column("row").to_pylist() == list(range(len(rows))) and table.column("error").null_count == len(rows)
    assert not parts.exists()


def test_batch_rescore_rescores_every_stored_check_of_a_brand(catalogue, tmp_path):
    store = Store(catalogue / "var" / DB_FILE)
    try:
        stored = {i for (i,) in store.query("SELECT id FROM checks WHERE brand = 'acme'")}
    finally:
        store.close()
    assert stored, "the scoring tests stored checks of acme"
    report = _run_confined(catalogue, "rescore", "--brand", "acme", "--no-alignment", record=tmp_path / "sockets.json")
    _assert_confined(tmp_path / "sockets.json")
    assert report["rescored"] + report["skipped_other_model"] == len(stored) and report["rescored"] == len(stored)
    store = Store(catalogue / "var" / DB_FILE)
    try:
        rescored = {i for (i,) in store.query("SELECT id FROM checks WHERE brand = 'acme' AND rescored_at IS NOT NULL")}
    finally:
        store.close()
    assert rescored == stored


def test_the_input_table_is_checked_before_any_work(tmp_path):
    (tmp_path / "listings.txt").write_text("x")
    with pytest.raises(InvalidInputError, match=".csv or .parquet"):
        read_listings(tmp_path / "listings.txt")
    (tmp_path / "no-photos.csv").write_text("listing_id,brand\nL1,acme\n")
    with pytest.raises(InvalidInputError, match="no photos column"):
        read_listings(tmp_path / "no-photos.csv")
    (tmp_path / "ok.csv").write_text("listing_id,brand,photos\nL1,acme,a.png|file:///x/b.png\n,, \n")
    first, second = read_listings(tmp_path / "ok.csv")
    assert first.photos == (str(tmp_path / "a.png"), "/x/b.png") and first.brand == "acme"
    assert second.listing_id is None and second.brand is None and second.photos == ()


def test_results_of_another_input_are_never_mixed_in(tmp_path):
    output = tmp_path / "out.parquet"
    ResultParts(output, input_digest="a" * 64)
    with pytest.raises(InvalidInputError, match="--restart"):
        ResultParts(output, input_digest="b" * 64)
    assert ResultParts(output, input_digest="b" * 64, restart=True).done_rows() == set()
