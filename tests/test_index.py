from __future__ import annotations

import numpy as np

from detector.index import GalleryIndex


def _unit(rows):
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _index():
    index = GalleryIndex(3)
    index.add(np.array([1, 2, 3]), ["a", "a", "b"], _unit([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0]]))
    return index


def test_brand_search_only_returns_that_brand():
    hits = _index().search_brand(_unit([[0, 1, 0]]), "a", 5)[0]
    assert set(hits.ids.tolist()) == {1, 2}
    assert hits.similarities[0] >= hits.similarities[-1]


def test_other_brand_search_excludes_the_brand():
    hits = _index().search_other_brands(_unit([[1, 0, 0]]), "a", 5)[0]
    assert hits.ids.tolist() == [3]


def test_remove_and_brand_sizes():
    index = _index()
    index.remove([1])
    assert index.brand_sizes() == {"a": 1, "b": 1}
    assert index.search_brand(_unit([[1, 0, 0]]), "a", 5)[0].ids.tolist() == [2]
    index.remove_brand("b")
    assert len(index) == 1 and index.brand_size("b") == 0


def test_save_load_roundtrip_and_staleness(tmp_path):
    index = _index()
    path = tmp_path / "index.faiss"
    index.save(path, gallery_version=7, model="m1")
    brand_of = {1: "a", 2: "a", 3: "b"}
    loaded = GalleryIndex.load(path, brand_of=brand_of, gallery_version=7, model="m1", dim=3)
    assert loaded is not None and len(loaded) == 3
    assert loaded.search_brand(_unit([[0, 1, 0]]), "b", 1)[0].ids.tolist() == [3]
    assert GalleryIndex.load(path, brand_of=brand_of, gallery_version=8, model="m1", dim=3) is None
    assert GalleryIndex.load(path, brand_of=brand_of, gallery_version=7, model="m2", dim=3) is None
    assert GalleryIndex.load(path, brand_of={1: "a"}, gallery_version=7, model="m1", dim=3) is None
    path.write_bytes(b"garbage")
    assert GalleryIndex.load(path, brand_of=brand_of, gallery_version=7, model="m1", dim=3) is None
