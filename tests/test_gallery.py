from __future__ import annotations

import logging

import numpy as np
import pytest

from detector.errors import ConflictError, InvalidImageError, InvalidInputError, NotFoundError, UnknownBrandError
from detector.gallery import INDEX_FILE, Gallery, UploadFile
from tests.synthetic import product_photo


def _files(brand, seeds):
    return [UploadFile(f"{brand}{s}.png", product_photo(brand, s)) for s in seeds]


def test_add_list_delete(gallery):
    gallery.create_brand("acme", "ACME")
    refs = gallery.add_references("acme", _files("acme", range(3)), product="sneaker")
    assert [r.duplicate for r in refs] == [False] * 3
    assert all(r.product == "sneaker" and r.width == 160 for r in refs)
    assert len(gallery.index) == 3
    listed = gallery.store.list_references("acme", limit=2)
    assert [r.id for r in listed] == [refs[0].id, refs[1].id]
    assert [r.id for r in gallery.store.list_references("acme", limit=2, after=listed[-1].id)] == [refs[2].id]
    gallery.delete_reference("acme", refs[0].id)
    assert len(gallery.index) == 2
    assert not gallery.blobs.exists(refs[0].sha256)
    with pytest.raises(NotFoundError):
        gallery.delete_reference("acme", refs[0].id)


def test_identical_bytes_are_stored_once(gallery):
    gallery.create_brand("acme")
    first = gallery.add_references("acme", _files("acme", [1]))[0]
    again = gallery.add_references("acme", _files("acme", [1]))[0]
    assert again.duplicate and again.id == first.id
    assert len(gallery.index) == 1 and len(gallery.blobs.digests()) == 1


def test_same_bytes_in_two_brands_share_one_original(gallery):
    for brand in ("acme", "zenit"):
        gallery.create_brand(brand)
        gallery.add_references(brand, [UploadFile("x.png", product_photo("acme", 5))])
    assert len(gallery.blobs.digests()) == 1
    gallery.delete_brand("acme")
    assert len(gallery.blobs.digests()) == 1  # still used by zenit
    gallery.delete_brand("zenit")
    assert gallery.blobs.digests() == set()


def test_upload_is_atomic(gallery):
    gallery.create_brand("acme")
    files = _files("acme", range(2)) + [UploadFile("bad.jpg", b"\xff\xd8 definitely not a jpeg")]
    with pytest.raises(InvalidImageError, match="bad.jpg"):
        gallery.add_references("acme", files)
    assert gallery.store.reference_count() == 0 and len(gallery.index) == 0
    assert gallery.blobs.digests() == set()


def test_brand_rules(gallery):
    gallery.create_brand("acme")
    with pytest.raises(ConflictError):
        gallery.create_brand("acme")
    with pytest.raises(InvalidInputError):
        gallery.create_brand("Bad Slug")
    with pytest.raises(UnknownBrandError):
        gallery.add_references("nope", _files("acme", [1]))


def test_index_rebuilt_when_missing_or_stale(tmp_path, zero_shot, embedder):
    data = tmp_path / "var"
    g = Gallery(data, embedder=embedder, model_fingerprint=zero_shot.fingerprint).open()
    g.create_brand("acme")
    g.add_references("acme", _files("acme", range(3)))
    g.save_index()
    # a change after the save makes the file stale
    g.add_references("acme", _files("acme", [9]))
    g.close()
    g = Gallery(data, embedder=embedder, model_fingerprint=zero_shot.fingerprint).open()
    assert len(g.index) == 4
    g.close()
    (data / INDEX_FILE).unlink()
    g = Gallery(data, embedder=embedder, model_fingerprint=zero_shot.fingerprint).open()
    assert len(g.index) == 4 and (data / INDEX_FILE).exists()
    g.close()


def test_model_change_reembeds_from_originals(tmp_path, zero_shot, embedder, caplog):
    data = tmp_path / "var"
    g = Gallery(data, embedder=embedder, model_fingerprint="old-model").open()
    g.create_brand("acme")
    g.add_references("acme", _files("acme", range(2)))
    # simulate embeddings made by another model
    ids, _, _, _ = g.store.all_embeddings(embedder.embedding_dim)
    g.store.update_embeddings([(int(i), np.zeros(embedder.embedding_dim, np.float32), None) for i in ids], model="old-model")
    g.close()
    g = Gallery(data, embedder=embedder, model_fingerprint=zero_shot.fingerprint)
    with caplog.at_level(logging.INFO, logger="detector.gallery"):
        g.open()
    assert "re-embedded 2/2 references" in caplog.messages
    _, _, matrix, models = g.store.all_embeddings(embedder.embedding_dim)
    assert set(models) == {zero_shot.fingerprint}
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    g.close()


def test_orphan_originals_removed_at_startup(tmp_path, zero_shot, embedder):
    data = tmp_path / "var"
    g = Gallery(data, embedder=embedder, model_fingerprint=zero_shot.fingerprint).open()
    digest = g.blobs.put(b"left by a crash before the database commit")
    g.close()
    g = Gallery(data, embedder=embedder, model_fingerprint=zero_shot.fingerprint).open()
    assert not g.blobs.exists(digest)
    g.close()
