"""``cfd data synth`` then ``cfd evaluate`` end to end, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.synth.defects import KINDS

CFD = str(Path(sys.executable).parent / "cfd")


def test_synth_then_evaluate(tmp_path):
    data, report = tmp_path / "synth", tmp_path / "report"
    subprocess.run([CFD, "data", "synth", "--out", str(data), "--brands", "3", "--references", "2", "--genuine", "3",
                    "--size", "96", "--seed", "3", "-q"], check=True, capture_output=True, timeout=300)
    out = subprocess.run([CFD, "evaluate", "--data", str(data), "--out", str(report), "-q"],
                         check=True, capture_output=True, text=True, timeout=300)
    summary = json.loads(out.stdout)
    assert 0.0 <= summary["overall"]["roc_auc"] <= 1.0
    full = json.loads((report / "report.json").read_text())
    assert full["overall"]["n_genuine"] == 9 and full["overall"]["n_counterfeit"] == 3 * 3 * len(KINDS)
    assert set(full["per_kind"]) == set(KINDS)
    assert set(full["per_severity"]) == {"1", "2", "3"}
    assert len(full["per_brand"]) == 3
    confusion = full["confusion"]
    assert sum(confusion["genuine"].values()) == 9
    # realised rates at the shipped thresholds, next to the calibration's targets, agree with the confusion
    realised = full["realised"]
    assert realised["targets"] == {"flagged_fpr": 0.05, "counterfeit_fpr": 0.01}
    flagged = confusion["genuine"].get("suspicious", 0) + confusion["genuine"].get("counterfeit", 0)
    assert realised["overall"]["flagged_fpr"] == pytest.approx(flagged / 9)
    assert summary["at_shipped_thresholds"]["flagged_fpr"] == realised["overall"]["flagged_fpr"]
    assert set(realised["per_brand"]) == set(full["per_brand"])
    assert sum(r["n_genuine"] for r in realised["per_brand"].values()) == 9
    for name in ("roc.png", "score_histogram.png"):
        assert (report / name).read_bytes()[:4] == b"\x89PNG"
    markdown = (report / "report.md").read_text()
    assert "ROC-AUC" in markdown and "other_brand" in markdown and "Realised rates at the shipped thresholds" in markdown
    assert (report / "samples.csv").read_text().count("\n") == 9 + 3 * 3 * len(KINDS) + 1


def test_synth_rejects_bad_arguments(tmp_path):
    result = subprocess.run([CFD, "data", "synth", "--out", str(tmp_path / "x"), "--brands", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.startswith("error:")
