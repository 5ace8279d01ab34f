"""Patch evidence: the anomaly maths, the patch head through model folders, storage and checks."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detector.gallery import Gallery, UploadFile
from detector.images import load_image
from detector.patches import SOFTMIN_SHARPNESS, patch_anomaly, reference_anomaly
from detector.pipeline import Detector
from detector.scoring import Scorer
from detector.store import Store
from tests.conftest import PATCH_DIM
from tests.synthetic import product_photo


def _records(n: int = 12, seed: int = 0, dim: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([F.normalize(torch.randn(n, dim, generator=g), dim=-1), torch.zeros(n, 1)], dim=1)


def test_a_photo_showing_every_part_of_the_reference_has_no_anomaly():
    reference = _records()
    # the same parts in another arrangement (pose), plus background patches of its own
    photo = torch.cat([reference[torch.randperm(12, generator=torch.Generator().manual_seed(1))], _records(seed=5)])
    assert float(reference_anomaly(photo, reference)) < 1e-5


def test_a_changed_part_counts_by_its_attention():
    reference = _records()
    photo = reference.clone()
    photo[3, :-1] = -reference[3, :-1]  # one part no longer looks like itself
    uniform = float(reference_anomaly(photo, reference))
    focused = reference.clone()
    focused[3, -1] = 6.0  # the reference says that part matters most
    assert 0 < uniform < float(reference_anomaly(photo, focused))


def test_the_best_explaining_reference_wins():
    photo = _records()
    same, other = photo.clone(), _records(seed=9)
    assert float(patch_anomaly(photo, [other, same])) < 0.05 < float(reference_anomaly(photo, other))
    # with identical references the soft minimum is the value itself
    value = float(reference_anomaly(photo, other))
    assert float(patch_anomaly(photo, [other, other, other])) == pytest.approx(value, abs=1e-5)


def _files(brand, seeds):
    return [UploadFile(f"{brand}{s}.png", product_photo(brand, s)) for s in seeds]


def _images(brand, seeds):
    return [load_image(product_photo(brand, s)) for s in seeds]


def _gallery(path, model):
    return Gallery(path, embedder=replace(model, precision="fp32").embedder(), model_fingerprint=model.fingerprint).open()


def test_references_keep_their_patch_records(tmp_path, patch_model):
    gallery = _gallery(tmp_path / "var", patch_model)
    gallery.create_brand("acme")
    refs = gallery.add_references("acme", _files("acme", range(2)))
    stored = gallery.reference_patches([r.id for r in refs])
    expected = gallery.embedder.embed(_images("acme", range(2))).patches
    assert stored[refs[0].id].shape == (14 * 14, PATCH_DIM + 1)
    np.testing.assert_array_equal(np.stack([stored[r.id] for r in refs]), expected)
    gallery.close()


def test_a_check_gets_patch_evidence_and_a_reason(tmp_path, patch_model):
    gallery = _gallery(tmp_path / "var", patch_model)
    for brand in ("acme", "zenit"):
        gallery.create_brand(brand)
        gallery.add_references(brand, _files(brand, range(3)))
    photos = gallery.embedder.embed(_images("acme", [0]) + _images("zenit", [7]))
    evidence = Scorer(patch_model.calibration, gallery.index, reference_patches=gallery.reference_patches).evidence(photos, "acme")
    own, impostor = (e.signals["patch_anomaly"] for e in evidence)
    # photo 0 is reference 0 itself, so every part is there: what is left is the softness of the minimum
    assert own <= np.log(3) / SOFTMIN_SHARPNESS + 1e-3
    assert impostor > 2 * own
    result = Detector(patch_model, gallery).check(_files("zenit", [7]), brand="acme")
    assert "local_mismatch" in result.images[0].flags
    assert any("find no match" in reason for reason in result.reasons)
    assert (result.model.name, result.model.version) == ("patchy", "0.1.0")
    gallery.close()


def test_switching_models_fills_and_keeps_patch_records(tmp_path, zero_shot, patch_model):
    gallery = _gallery(tmp_path / "var", zero_shot)
    gallery.create_brand("acme")
    ids = [r.id for r in gallery.add_references("acme", _files("acme", range(2)))]
    assert gallery.reference_patches(ids) == {}  # the zero-shot model has no patch head
    gallery.close()
    reopened = _gallery(tmp_path / "var", patch_model)  # a new model re-embeds from the stored originals
    assert sorted(reopened.reference_patches(ids)) == ids
    assert reopened.patches.digests() == reopened.store.reference_digests()
    reopened.close()


def test_patch_records_live_outside_the_database_and_are_recomputed_when_missing(tmp_path, patch_model):
    gallery = _gallery(tmp_path / "var", patch_model)
    gallery.create_brand("acme")
    refs = gallery.add_references("acme", _files("acme", range(3)))
    expected = gallery.reference_patches([r.id for r in refs])
    assert gallery.store.query("SELECT COUNT(*) FROM refs WHERE patches IS NOT NULL") == [(0,)]
    for ref in refs[:2]:
        gallery.patches.path(ref.sha256).unlink()
    gallery.close()
    gallery = _gallery(tmp_path / "var", patch_model)
    again = gallery.reference_patches([r.id for r in refs])
    for ref in refs:
        np.testing.assert_array_equal(again[ref.id], expected[ref.id])
    assert gallery.patches.path(refs[0].sha256).exists()  # stored again once recomputed
    gallery.delete_reference("acme", refs[2].id)
    assert not gallery.patches.path(refs[2].sha256).exists()  # removed with the original
    gallery.close()


def test_patch_records_kept_in_rows_by_an_older_version_are_moved_out(tmp_path, patch_model):
    gallery = _gallery(tmp_path / "var", patch_model)
    gallery.create_brand("acme")
    refs = gallery.add_references("acme", _files("acme", range(2)))
    expected = gallery.reference_patches([r.id for r in refs])
    with gallery.store.transaction() as conn:  # as an older version stored them
        for ref in refs:
            conn.execute("UPDATE refs SET patches = ? WHERE id = ?", (expected[ref.id].astype(np.float16).tobytes(), ref.id))
    folder = gallery.patches.root
    gallery.close()
    shutil.rmtree(folder)
    gallery = _gallery(tmp_path / "var", patch_model)
    assert gallery.store.query("SELECT COUNT(*) FROM refs WHERE patches IS NOT NULL") == [(0,)]
    assert gallery.patches.digests() == {r.sha256 for r in refs}
    moved = gallery.reference_patches([r.id for r in refs])
    for ref in refs:
        np.testing.assert_array_equal(moved[ref.id], expected[ref.id])
    gallery.close()


def test_a_database_from_before_patch_records_is_migrated(tmp_path):
    store = Store(tmp_path / "db.sqlite3")
    store.close()
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    conn.execute("ALTER TABLE refs DROP COLUMN patches")
    conn.execute("DROP TABLE schema_migrations")  # its schema predates numbered migrations
    conn.commit()
    conn.close()
    store = Store(tmp_path / "db.sqlite3")
    assert "patches" in {row[1] for row in store.query("PRAGMA table_info(refs)")}
    store.close()
