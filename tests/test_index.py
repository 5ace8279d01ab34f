from __future__ import annotations

import numpy as np
import pytest

from detector.index import BrandVectors, GalleryIndex, IndexRecipe

# An approximate index even for a few thousand vectors: small lists, few probes.
SMALL_APPROXIMATE = IndexRecipe(approximate_from=500, pca_dim=48, lists_per_sqrt=1.0, min_lists=16, min_probes=4,
                                probe_fraction=1 / 2, rerank=128, train_sample=5000)


# Vectors are held in fp16: a unit vector's inner product with a unit query moves by at most 2^-11.
FP16 = 2**-11


def _unit(rows):
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _index():
    index = GalleryIndex(3)
    index.add(np.array([1, 2, 3]), ["a", "a", "b"], _unit([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0]]))
    return index


def _clustered(n, dim=64, brands=40, seed=0):
    """Unit vectors in brand clusters: (ids, brands, vectors)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((brands, dim)).astype(np.float32)
    of = rng.integers(0, brands, n)
    vectors = _unit(centers[of] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32))
    return np.arange(1, n + 1, dtype=np.int64), [f"b{b}" for b in of], vectors


def _exact_other_best(vectors, brands, query, brand):
    sims = vectors @ query
    sims[np.asarray(brands) == brand] = -np.inf
    return float(sims.max())


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


def test_brand_vectors_keep_every_vector_with_its_id_through_removals():
    ids, brands, vectors = _clustered(300, brands=3)
    store = BrandVectors(vectors.shape[1])
    store.add(ids, brands, vectors)
    gone = ids[::3]
    store.remove(gone)
    kept = np.setdiff1d(ids, gone)
    np.testing.assert_array_equal(store.all_ids(), kept)
    np.testing.assert_allclose(store.vectors_of(kept), vectors[kept - 1], rtol=FP16, atol=2**-24)
    assert all(store.brand_of(int(i)) == brands[i - 1] for i in kept)
    assert sum(store.brand_sizes().values()) == len(kept) == len(store)
    store.add(ids[:2], brands[:2], vectors[:2])  # adding a present id again replaces it
    assert len(store) == len(kept) + 1


def test_brand_search_is_exhaustive_over_the_held_vectors_through_churn():
    ids, brands, vectors = _clustered(3000, brands=3)
    store = BrandVectors(vectors.shape[1])
    store.reserve({"b0": 100}, 10)  # a reservation smaller than what comes: the buffers still grow
    rng = np.random.default_rng(5)
    present = {}
    for start in range(0, 3000, 500):  # adds and removals interleaved, some ids removed then added again
        chunk = slice(start, start + 500)
        store.add(ids[chunk], brands[chunk], vectors[chunk])
        present.update({int(i): b for i, b in zip(ids[chunk], brands[chunk])})
        gone = rng.choice(sorted(present), 150, replace=False)
        store.remove(gone)
        for i in gone:
            del present[int(i)]
        back = gone[:20]
        store.add(back, [brands[i - 1] for i in back], vectors[back - 1])
        present.update({int(i): brands[i - 1] for i in back})
    queries = _unit(rng.standard_normal((20, vectors.shape[1])))
    held = vectors.astype(np.float16).astype(np.float32)
    for brand in ("b0", "b1", "b2"):
        members = np.array(sorted(i for i, b in present.items() if b == brand))
        assert store.brand_size(brand) == len(members)
        for query, (sims, found) in zip(queries, store.search_brand(queries, brand, 5)):
            expected = held[members - 1] @ query
            order = np.argsort(-expected)[:5]
            np.testing.assert_allclose(sims, expected[order], atol=1e-5)
            np.testing.assert_array_equal(np.sort(found), np.sort(members[order]))


def test_approximate_search_finds_the_exact_other_brand_best_match():
    ids, brands, vectors = _clustered(4000)
    index = GalleryIndex(vectors.shape[1], recipe=SMALL_APPROXIMATE)
    index.add(ids, brands, vectors)
    index.wait_for_training()
    assert index.approximate
    _, query_brands, queries = _clustered(200, seed=1)
    found = 0
    for query, brand in zip(queries, query_brands):
        hits = index.search_other_brands(query[None], brand, 1)[0]
        assert index.brand_of(int(hits.ids[0])) != brand
        # re-scored from the stored vectors: the similarity reported is the true one (to fp16 rounding)
        assert float(hits.similarities[0]) == pytest.approx(float(vectors[hits.ids[0] - 1] @ query), abs=FP16)
        found += float(hits.similarities[0]) == pytest.approx(_exact_other_best(vectors, brands, query, brand), abs=FP16)
    assert found / len(queries) >= 0.95


def _stored_ids(index):
    from detector.index.gallery_index import _stored_ids

    return np.sort(_stored_ids(index.others.raw))


def test_the_gallery_turns_approximate_when_it_reaches_the_recipes_size():
    ids, brands, vectors = _clustered(600)
    index = GalleryIndex(vectors.shape[1], recipe=SMALL_APPROXIMATE)
    index.add(ids[:499], brands[:499], vectors[:499])
    assert not index.approximate
    index.add(ids[499:], brands[499:], vectors[499:])  # trains in the background; searches go on exactly
    index.wait_for_training()
    assert index.approximate and len(index.others) == len(index) == 600
    np.testing.assert_array_equal(_stored_ids(index), ids)


def test_changes_made_while_a_new_index_trains_are_all_in_it():
    ids, brands, vectors = _clustered(24_000)
    recipe = IndexRecipe(approximate_from=500, pca_dim=48, lists_per_sqrt=1.0, min_lists=16, retrain_growth=4.0)
    index = GalleryIndex(vectors.shape[1], recipe=recipe)
    index.add(ids[:4000], brands[:4000], vectors[:4000])
    index.wait_for_training()
    trained_on = index.others.trained_on
    # past 4x the size it was trained at: a new index trains while adds and deletes go on
    index.add(ids[4000:16_000], brands[4000:16_000], vectors[4000:16_000])
    gone = ids[:12_000:3]
    during = []
    for start in range(16_000, 24_000, 500):
        during.append(index.training)
        index.add(ids[start : start + 500], brands[start : start + 500], vectors[start : start + 500])
        index.remove(gone[(start - 16_000) // 2 : (start - 16_000) // 2 + 250].tolist())
    assert any(during)  # the changes above raced the training
    index.wait_for_training()
    assert index.others.trained_on > trained_on
    np.testing.assert_array_equal(_stored_ids(index), index.vectors.all_ids())
    assert not set(gone.tolist()) & set(index.vectors.all_ids().tolist())
    for ref_id in gone[:50]:
        assert not set(index.search(vectors[ref_id - 1][None], 10)[0].ids.tolist()) & set(gone.tolist())


def test_deleted_references_never_come_back():
    ids, brands, vectors = _clustered(3000)
    index = GalleryIndex(vectors.shape[1], recipe=SMALL_APPROXIMATE)
    index.add(ids, brands, vectors)
    index.wait_for_training()
    gone = set(ids[::2].tolist())
    index.remove(sorted(gone))
    index.remove_brand("b7")
    gone |= {int(i) for i, b in zip(ids, brands) if b == "b7"}
    # the deleted vectors themselves are the queries most likely to find them
    for ref_id in list(gone)[:300]:
        query = vectors[ref_id - 1][None]
        returned = {int(i) for hits in (index.search(query, 10), index.search_other_brands(query, "b1", 10),
                                        index.search_brand(query, brands[ref_id - 1], 10)) for i in hits[0].ids}
        assert not returned & gone
    assert len(index.others) == len(index) == len(ids) - len(gone)


@pytest.mark.parametrize("recipe", [IndexRecipe(), SMALL_APPROXIMATE], ids=["exact", "approximate"])
def test_restore_reuses_a_matching_saved_index_and_rebuilds_a_stale_one(tmp_path, recipe):
    ids, brands, vectors = _clustered(1000)
    path = tmp_path / "index.faiss"

    def loaded(without=()):
        store = BrandVectors(vectors.shape[1])
        store.add(ids, brands, vectors)
        store.remove(np.asarray(without, np.int64))
        return store

    index = GalleryIndex.from_vectors(loaded(), recipe=recipe)
    index.save(path, gallery_version=7, model="m1")
    restored, how = GalleryIndex.restore(path, loaded(), gallery_version=7, model="m1", recipe=recipe)
    assert how == "loaded" and restored.approximate == index.approximate
    query = vectors[:5]
    for a, b in zip(restored.search_other_brands(query, "b1", 3), index.search_other_brands(query, "b1", 3)):
        np.testing.assert_array_equal(a.ids, b.ids)
    stale = [dict(gallery_version=7, model="m2", recipe=recipe),
             dict(gallery_version=7, model="m1", recipe=IndexRecipe(rerank=recipe.rerank + 1))]
    for kwargs in stale:
        rebuilt, how = GalleryIndex.restore(path, loaded(), **kwargs)
        assert how == "built" and len(rebuilt.others) == 1000
    # other ids under the same gallery version: not a file this gallery wrote
    assert GalleryIndex.restore(path, loaded(without=ids[:1]), gallery_version=7, model="m1", recipe=recipe)[1] == "built"
    path.write_bytes(b"garbage")
    assert GalleryIndex.restore(path, loaded(), gallery_version=7, model="m1", recipe=recipe)[1] == "built"


def test_a_saved_index_behind_the_gallery_is_brought_up_to_date(tmp_path):
    ids, brands, vectors = _clustered(3000)
    path = tmp_path / "index.faiss"
    saved = BrandVectors(vectors.shape[1])
    saved.add(ids[:2900], brands[:2900], vectors[:2900])
    GalleryIndex.from_vectors(saved, recipe=SMALL_APPROXIMATE).save(path, gallery_version=7, model="m1")
    # since the save (a crash skipped the next one): 100 references added, 200 deleted
    now = BrandVectors(vectors.shape[1])
    now.add(ids, brands, vectors)
    gone = ids[:200]
    now.remove(gone)
    restored, how = GalleryIndex.restore(path, now, gallery_version=9, model="m1", recipe=SMALL_APPROXIMATE)
    assert how == "brought up to date (+100, -200)" and restored.approximate
    assert len(restored.others) == len(restored) == 2800
    for ref_id in gone[:50]:
        assert not set(restored.search(vectors[ref_id - 1][None], 10)[0].ids.tolist()) & set(gone.tolist())
    for ref_id in ids[2900:2950]:  # an added reference is its own best match
        assert int(restored.search(vectors[ref_id - 1][None], 1)[0].ids[0]) == ref_id
    # too far behind: rebuilt
    few = BrandVectors(vectors.shape[1])
    few.add(ids[:1000], brands[:1000], vectors[:1000])
    assert GalleryIndex.restore(path, few, gallery_version=9, model="m1", recipe=SMALL_APPROXIMATE)[1] == "built"
