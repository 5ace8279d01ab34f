from __future__ import annotations

import csv
import hashlib

import pytest

from training.synth.defects import KINDS
from training.synth.generate import SynthConfig, generate

TINY = SynthConfig(brands=3, seed=5, references=2, genuine=2, per_severity=1, size=96)


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "a"
    generate(out, TINY, contact_sheet=True)
    return out


def test_same_arguments_give_identical_files(tiny_set, tmp_path):
    generate(tmp_path / "b", TINY, contact_sheet=True)
    assert _digests(tiny_set) == _digests(tmp_path / "b")


def test_another_seed_gives_other_photos(tiny_set, tmp_path):
    generate(tmp_path / "c", SynthConfig(**{**TINY.__dict__, "seed": 6}))
    a, c = _digests(tiny_set), _digests(tmp_path / "c")
    assert set(a.values()).isdisjoint(set(c.values()))


def test_layout_and_manifest(tiny_set):
    rows = list(csv.DictReader(open(tiny_set / "manifest.csv")))
    brands = sorted({r["brand"] for r in rows})
    assert len(brands) == 3
    per_brand = 2 + 2 + len(KINDS) * 3
    assert len(rows) == 3 * per_brand
    for row in rows:
        path = tiny_set / row["path"]
        assert path.is_file() and path.suffix == ".jpg"
        parts = row["path"].split("/")
        assert parts[0] == row["brand"]
        if row["role"] == "counterfeit":
            assert parts[1:3] == ["counterfeit", row["kind"]] and row["severity"] in {"1", "2", "3"}
        else:
            assert parts[1] == row["role"] and row["severity"] == ""
        assert row["split"] in {"train", "val", "test"} and row["seed"].isdigit()
    kinds = {r["kind"] for r in rows if r["role"] == "counterfeit"}
    assert kinds == set(KINDS)
    # one split per brand: a brand never straddles splits
    assert all(len({r["split"] for r in rows if r["brand"] == b}) == 1 for b in brands)


def test_contact_sheet_is_a_png(tiny_set):
    assert (tiny_set / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_listing_photos_are_jpeg_in_the_stated_quality_range(tiny_set):
    from PIL import Image

    qualities = []
    for path in tiny_set.rglob("gen_*.jpg"):
        table = Image.open(path).quantization[0]
        qualities.append(sum(table) / len(table))
    # phone photos vary their JPEG quality: the quantisation tables are not all the same
    assert len(set(round(q, 1) for q in qualities)) > 1


def test_blur_and_jpeg_statistics_cannot_tell_the_classes_apart(tmp_path):
    """Genuine and counterfeit listing photos share one nuisance distribution."""
    import numpy as np
    from PIL import Image, ImageFilter

    from detector.evaluation.metrics import roc_auc

    out = tmp_path / "nuisance"
    rows = generate(out, SynthConfig(brands=4, seed=8, references=1, genuine=21, per_severity=1, size=128))
    listings = [r for r in rows if r["role"] != "references"]
    labels = [int(r["role"] == "counterfeit") for r in listings]
    quantisation, sharpness = [], []
    for row in listings:
        image = Image.open(out / row["path"])
        table = image.quantization[0]
        quantisation.append(sum(table) / len(table))
        sharpness.append(np.asarray(image.convert("L").filter(ImageFilter.FIND_EDGES), np.float32).var())
    for name, values in (("JPEG quantisation", quantisation), ("edge energy", sharpness)):
        auc = roc_auc(labels, values)
        assert 0.35 < auc < 0.65, f"{name} alone separates genuine from counterfeit (ROC-AUC {auc:.2f})"
