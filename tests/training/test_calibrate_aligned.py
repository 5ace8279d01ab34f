"""``cfd calibrate --aligned-features`` then ``cfd evaluate`` with the new model folder, end to end on
photos that align: the aligned fusion is fitted on aligned photos and used for them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.alignment_scenes import listing_photo, other_product, studio_product
from tests.synthetic import encode

CFD = str(Path(sys.executable).parent / "cfd")


def _write(path: Path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(image, "JPEG", quality=92))


@pytest.mark.parametrize("fusion", ["linear", "additive"])
def test_calibrate_an_aligned_fusion_and_evaluate_with_it(tmp_path, fusion):
    data = tmp_path / "data"
    for i in range(2):
        _write(data / "acme" / "references" / f"r{i}.jpg", studio_product(seed=i))
        _write(data / "orbit" / "references" / f"r{i}.jpg", other_product(seed=i))
    for i in range(6):
        _write(data / "acme" / "genuine" / f"g{i}.jpg", listing_photo(studio_product(seed=i % 2), 10 + i)[0])
        _write(data / "acme" / "counterfeit" / "logo" / f"c{i}.jpg", listing_photo(studio_product(seed=i % 2, tampered=True), 20 + i)[0])
        _write(data / "orbit" / "genuine" / f"g{i}.jpg", listing_photo(other_product(seed=i % 2), 30 + i)[0])
    model = tmp_path / "model"
    subprocess.run([CFD, "calibrate", "--data", str(data), "--aligned-features", "aligned_block_peak", "--fusion", fusion,
                    "--out", str(model), "-q"], check=True, capture_output=True, text=True, timeout=600)
    calibration = json.loads((model / "calibration.json").read_text())
    # the embedding fusion as it is, plus the alignment signal
    assert calibration["aligned"]["features"] == [*calibration["features"], "aligned_block_peak"]
    assert calibration["aligned"]["weights"][:-1] == calibration["weights"]
    if fusion == "linear":
        assert calibration["aligned"]["weights"][-1] > 0  # a block that stands out raises the score
    else:  # each signal through its shape, the embedding signals' shapes shared
        assert {k: v for k, v in calibration["aligned"]["shapes"].items() if k != "aligned_block_peak"} == calibration["shapes"]
        values = calibration["aligned"]["shapes"]["aligned_block_peak"]["values"]
        assert values[-1] > values[0]
    assert calibration["extra"]["aligned_fitted_on"] > 0 and calibration["extra"]["high_block_peak"] > 0
    report = tmp_path / "report"
    out = subprocess.run([CFD, "evaluate", "--data", str(data), "--model", str(model), "--out", str(report), "-q"],
                         check=True, capture_output=True, text=True, timeout=600)
    assert json.loads(out.stdout)["per_kind"]["logo"] > 0.9
    rows = list(csv.DictReader(open(report / "samples.csv")))
    acme = [r for r in rows if r["brand"] == "acme"]
    assert all(r["aligned"] == "True" for r in acme) and all(r["aligned_reference"].startswith("acme/references/") for r in acme)
    # without --align the same model scores by embeddings only, and says so in every row
    plain = tmp_path / "plain"
    subprocess.run([CFD, "evaluate", "--data", str(data), "--model", str(model), "--no-align", "--out", str(plain), "-q"],
                   check=True, capture_output=True, text=True, timeout=600)
    assert {r["aligned"] for r in csv.DictReader(open(plain / "samples.csv"))} == {""}


@pytest.mark.parametrize("arguments, message", [
    (["--features", "bogus"], "unknown signals ['bogus']"),
    (["--features", "aligned_block_peak"], "belong in --aligned-features"),
    (["--aligned-features", "brand_margin"], "takes alignment signals only"),
    (["--features", "brand_margin,patch_anomaly"], "does not produce ['patch_anomaly']"),
    (["--aligned-features", "aligned_block_peak,aligned_block_peak"], "names a signal twice"),
])
def test_calibrate_refuses_misplaced_signals_before_scoring_anything(tmp_path, arguments, message):
    result = subprocess.run([CFD, "calibrate", "--data", str(tmp_path / "never-read"), *arguments, "-q"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
