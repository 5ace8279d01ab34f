from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from detector.errors import ConflictError, InvalidImageError, InvalidInputError, NotFoundError, UnknownBrandError
from detector.gallery import INDEX_FILE, Gallery, UploadFile
from detector.images import load_image
from tests.synthetic import product_photo


@pytest.fixture
def database(engine_database):
    """The tests that take a gallery (or ``database``) run on SQLite and on PostgreSQL."""
    return engine_database


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


def test_restart_reuses_the_saved_index_brings_it_up_to_date_and_rebuilds_a_missing_one(tmp_path, zero_shot, embedder, caplog,
                                                                                         database):
    data = tmp_path / "var"

    def reopened():
        with caplog.at_level(logging.INFO, logger="detector.gallery"):
            caplog.clear()
            g = Gallery(data, embedder=embedder, model_fingerprint=zero_shot.fingerprint, database=database).open()
        return g, [m for m in caplog.messages if m.startswith("index of ")]

    g, _ = reopened()
    g.create_brand("acme")
    g.add_references("acme", _files("acme", range(3)))
    g.save_index()
    g.close()
    g, said = reopened()
    assert said == ["index of 3 references loaded"]
    # a change after the save (a crash skipped the save at shutdown)
    g.add_references("acme", _files("acme", [9]))
    g.close()
    g, said = reopened()
    assert said == ["index of 4 references brought up to date (+1, -0)"] and len(g.index) == 4
    g.close()
    g, said = reopened()
    assert said == ["index of 4 references loaded"]  # saved once brought up to date
    g.close()
    (data / INDEX_FILE).unlink()
    g, said = reopened()
    assert said == ["index of 4 references built"] and (data / INDEX_FILE).exists()
    g.close()


def test_model_change_reembeds_from_originals(tmp_path, zero_shot, embedder, caplog):
    data = tmp_path / "var"
    g = Gallery(data, embedder=embedder, model_fingerprint="old-model").open()
    g.create_brand("acme")
    g.add_references("acme", _files("acme", range(2)))
    # simulate embeddings made by another model
    ids, _ = g.store.reference_ids(model="old-model")
    g.store.update_embeddings([(int(i), np.zeros(embedder.embedding_dim, np.float32)) for i in ids], model="old-model")
    g.close()
    g = Gallery(data, embedder=embedder, model_fingerprint=zero_shot.fingerprint)
    with caplog.at_level(logging.INFO, logger="detector.gallery"):
        g.open()
    assert "re-embedded 2/2 references" in caplog.messages
    models = [model for (model,) in g.store.query("SELECT model FROM refs")]
    assert set(models) == {zero_shot.fingerprint}
    (_, _, matrix), = g.store.iter_embeddings(embedder.embedding_dim, model=zero_shot.fingerprint)
    assert len(matrix) == 2
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


def _reopen(data, zero_shot, embedder):
    return Gallery(data, embedder=embedder, model_fingerprint=zero_shot.fingerprint).open()


@pytest.mark.parametrize("meta", ["[]", "{", '"text"', "null"])
def test_a_broken_index_meta_file_means_a_rebuild(tmp_path, zero_shot, embedder, meta):
    data = tmp_path / "var"
    g = _reopen(data, zero_shot, embedder)
    g.create_brand("acme")
    g.add_references("acme", _files("acme", range(2)))
    g.save_index()
    g.close()
    (data / (INDEX_FILE + ".meta.json")).write_text(meta)
    g = _reopen(data, zero_shot, embedder)
    assert len(g.index) == 2
    g.close()


def test_an_index_file_with_zeroed_vectors_is_not_trusted(tmp_path, zero_shot, embedder):
    data = tmp_path / "var"
    g = _reopen(data, zero_shot, embedder)
    g.create_brand("acme")
    refs = g.add_references("acme", _files("acme", range(3)))
    g.save_index()
    query = embedder.embed([load_image(product_photo("acme", 1))]).vectors
    expected = g.index.search(query, 1)[0]  # through the saved (other-brand) index
    first_vector = g.index.vectors.vectors_of(np.array([refs[0].id]))[0]  # as the index holds it
    g.close()
    raw = bytearray((data / INDEX_FILE).read_bytes())
    vectors = 3 * embedder.embedding_dim * 4
    start = raw.find(np.asarray(first_vector, np.float32).tobytes()[:64])
    assert start > 0 and start + vectors <= len(raw)
    raw[start : start + vectors] = bytes(vectors)  # same size, same ids: only the vectors are gone
    (data / INDEX_FILE).write_bytes(bytes(raw))
    g = _reopen(data, zero_shot, embedder)
    got = g.index.search(query, 1)[0]
    assert int(got.ids[0]) == int(expected.ids[0]) == refs[1].id
    assert float(got.similarities[0]) == pytest.approx(float(expected.similarities[0]), abs=1e-5)
    g.close()


def test_a_missing_or_corrupt_original_is_reported_not_fatal_on_a_model_change(tmp_path, zero_shot, embedder, caplog):
    data = tmp_path / "var"
    g = Gallery(data, embedder=embedder, model_fingerprint="old-model").open()
    g.create_brand("acme")
    refs = g.add_references("acme", _files("acme", range(4)))
    g.blobs.path(refs[0].sha256).unlink()
    g.blobs.path(refs[1].sha256).write_bytes(b"\x89PNG\r\n\x1a\n damaged on disk")
    g.close()
    with caplog.at_level(logging.ERROR, logger="detector.gallery"):
        g = _reopen(data, zero_shot, embedder)
    for ref in refs[:2]:
        assert any(f"reference {ref.id}" in m and "cannot be used" in m for m in caplog.messages), caplog.messages
    assert g.index.brand_size("acme") == 2  # the other two moved to the new model
    g.close()


def test_a_cache_that_cannot_be_saved_never_stops_start_up(tmp_path, zero_shot, embedder):
    data = tmp_path / "var"
    g = _reopen(data, zero_shot, embedder)
    g.create_brand("acme")
    g.add_references("acme", _files("acme", range(2)))
    g.close()
    (data / INDEX_FILE).unlink(missing_ok=True)
    (data / INDEX_FILE).mkdir()  # the index cannot be written there
    g = _reopen(data, zero_shot, embedder)
    assert len(g.index) == 2
    g.close()


def test_a_full_disk_is_a_typed_error_and_stores_nothing(small_disk, zero_shot, embedder):
    from detector.errors import InsufficientStorageError
    from tests.synthetic import encode

    g = _reopen(small_disk / "var", zero_shot, embedder)
    g.create_brand("acme")
    g.add_references("acme", _files("acme", range(1)))
    rng = np.random.default_rng(0)
    noise = encode(Image.fromarray(rng.integers(0, 255, (1100, 1100, 3), dtype=np.uint8)))  # ~3.6 MB, incompressible
    with pytest.raises(InsufficientStorageError):
        g.add_references("acme", [UploadFile("noise.png", noise)])
    assert g.store.reference_count() == 1 and len(g.blobs.digests()) == 1
    g.close()


def test_start_up_after_a_crash_on_a_full_disk_frees_space_first(small_disk, zero_shot, embedder):
    """A crash left an original without its row, and the disk is full: clean-up runs before the
    index needs to be saved, so the restarted service comes up (it stayed not-ready before)."""
    data = small_disk / "var"
    crashed = _reopen(data, zero_shot, embedder)  # left open, as a killed process leaves its WAL behind
    crashed.create_brand("acme")
    crashed.add_references("acme", _files("acme", range(2)))
    (data / INDEX_FILE).unlink()
    orphan = crashed.blobs.path("ab" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    with open(orphan, "wb") as handle:  # an upload's original that never got its row, filling the disk
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    restarted = _reopen(data, zero_shot, embedder)
    assert not orphan.exists() and len(restarted.index) == 2
    assert (data / INDEX_FILE).is_file()  # saved once there was room again
    restarted.close()
    crashed.close()
