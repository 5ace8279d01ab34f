"""Twins of synthetic counterfeits, and the ceiling study built on them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.synth.generate import SynthConfig, generate
from training.synth.twins import counterfeit_twins

SMALL = SynthConfig(brands=2, seed=5, references=2, genuine=2, per_severity=1, size=160)


@pytest.fixture(scope="module")
def twins():
    return list(counterfeit_twins(SMALL))


def test_each_counterfeit_is_the_file_generate_writes_and_its_twin_differs_only_by_the_defect(twins, tmp_path):
    generate(tmp_path, SMALL)
    assert len(twins) == 2 * 6 * 3  # every kind but other_brand, three severities
    for t in twins:
        assert (tmp_path / t.path).read_bytes() == t.counterfeit
        assert t.genuine != t.counterfeit and t.reference not in (t.genuine, t.counterfeit)
    from training.aligned_ceiling import defect_map

    # a colour change shows over the product; the same photo with the same noise differs nowhere else
    colour = next(t for t in twins if t.kind == "colour" and t.severity == 3)
    defect = defect_map(colour)
    assert (defect > 10).mean() > 0.05
    corner = defect[:8, :8]
    assert corner.max() < 2.0


def test_the_reference_is_drawn_at_the_photos_pose(twins):
    """The genuine twin compared with its reference under the identity differs less than under a shift of a
    few pixels: the reference's product sits where the photo's does."""
    from detector.alignment.compare import compare
    from detector.alignment.features import photo_view, reference_features
    from detector.alignment.recipe import DEFAULT_RECIPE
    from detector.images import load_image

    closer = 0
    chosen = [t for t in twins if t.kind == "print"]
    for t in chosen:
        reference = reference_features(photo_view(load_image(t.reference), DEFAULT_RECIPE), DEFAULT_RECIPE)
        photo = photo_view(load_image(t.genuine), DEFAULT_RECIPE)
        shifted = np.array([[1, 0, 6], [0, 1, 6], [0, 0, 1]], np.float64)
        at_pose, moved = (compare(photo, reference, h, DEFAULT_RECIPE) for h in (np.eye(3), shifted))
        closer += at_pose.signals["aligned_diff_area"] < moved.signals["aligned_diff_area"]
    assert closer == len(chosen)


def test_the_ceiling_study_writes_its_report(tmp_path):
    from training.aligned_ceiling import run

    report = run(SMALL, tmp_path)
    assert report["pairs"] == report["compared"] == 36
    saved = json.loads((tmp_path / "report.json").read_text())
    groups = saved["ceiling"]
    assert set(groups) == {"all", "colour", "logo", "material", "placement", "print", "wordmark",
                           "severity 1", "severity 2", "severity 3"}
    # colour counterfeits change far more of their photo than wordmark ones, and the comparison sees them
    assert groups["colour"]["visibility"]["10"]["median_visible_pixels"] > 10 * groups["wordmark"]["visibility"]["10"]["median_visible_pixels"]
    assert groups["colour"]["signals"]["aligned_diff_area"]["roc_auc"] > 0.75
    for g in groups.values():
        for v in g["visibility"].values():
            assert v["auc_bound"] == pytest.approx(1 - v["invisible_share"] / 2)
    assert "| wordmark |" in (tmp_path / "report.md").read_text()
    for name in ("ceiling.png", "examples.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content", ["not json", '[{"kind": "logo"}]', '[{"kind": "logo", "label": 1, "severity": "1", "aligned": true}]', '{"rows": []}'])
def test_rows_that_are_not_a_studys_are_refused_before_anything_is_written(tmp_path, monkeypatch, capsys, content):
    from training import aligned_ceiling

    rows = tmp_path / "rows.json"
    rows.write_text(content)
    monkeypatch.setattr("sys.argv", ["aligned_ceiling", "--out", str(tmp_path / "out"), "--rows", str(rows)])
    with pytest.raises(SystemExit) as exit_:
        aligned_ceiling.main()
    assert exit_.value.code == 2 and "--rows" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
