"""The store on both engines: SQLite (the embedded default) and a real PostgreSQL server.

Each test here runs on both; so do the gallery tests (tests/test_gallery.py) and the stored-check
tests (tests/test_review.py), which take the same ``database`` fixture.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from detector import audit, thresholds
from detector.database import schema
from detector.errors import ConflictError, InvalidInputError, NotFoundError, StoreUnavailableError, UnknownBrandError
from detector.keys import create_key
from detector.store import NewReference, Store

DIM = 8


@pytest.fixture
def location(engine_database, tmp_path):
    return engine_database or tmp_path / "db.sqlite3"


@pytest.fixture
def store(location):
    s = Store(location)
    yield s
    s.close()


def _vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _items(*seeds: int) -> list[NewReference]:
    return [NewReference(f"{s:064x}", 10 + s, 20 + s, _vector(s)) for s in seeds]


def test_brands_and_references_round_trip_with_the_gallery_version(store):
    assert store.gallery_version() == 0
    store.create_brand("acme", "ACME")
    with pytest.raises(ConflictError):
        store.create_brand("acme")
    added = store.add_references("acme", _items(1, 2, 3), product="sneaker", model="m1")
    assert [r.duplicate for r in added] == [False] * 3 and store.gallery_version() == 1
    again = store.add_references("acme", _items(2), product=None, model="m1")
    assert again[0].duplicate and again[0].id == added[1].id and store.gallery_version() == 1  # nothing changed
    assert store.list_brands() == [{"brand": "acme", "display_name": "ACME", "reference_count": 3}]
    assert [r.id for r in store.list_references("acme", limit=2, after=added[0].id)] == [added[1].id, added[2].id]
    assert store.get_reference("acme", added[0].id).width == 11
    ids, brands, vectors = next(store.iter_embeddings(DIM, model="m1", ids=np.array([added[2].id, added[0].id])))
    assert ids.tolist() == [added[0].id, added[2].id] and brands == ["acme", "acme"]
    np.testing.assert_array_equal(vectors, np.stack([_vector(1), _vector(3)]))
    assert store.reference_counts(model="m1") == ({"acme": 3}, added[2].id)

    store.update_embeddings([(added[0].id, _vector(9))], model="m2")
    assert store.stale_references("m2") == [(added[1].id, added[1].sha256), (added[2].id, added[2].sha256)]
    assert store.gallery_version() == 2
    assert store.delete_reference("acme", added[0].id) == added[0].sha256  # its bytes are used by no one else
    with pytest.raises(NotFoundError):
        store.delete_reference("acme", added[0].id)
    store.delete_brand("acme")
    assert store.reference_count() == 0 and store.gallery_version() == 4
    with pytest.raises(UnknownBrandError):
        store.add_references("acme", _items(4), product=None, model="m1")


def test_keys_audit_and_brand_thresholds(store):
    store.create_brand("acme")
    key, record = create_key(store, role="brand", brand="acme")
    assert store.find_api_key(record.key_hash).brand == "acme" and store.active_key_count() == 1
    store.revoke_api_key(record.id, actor="admin")
    with pytest.raises(NotFoundError):
        store.revoke_api_key(record.id)
    assert store.active_key_count() == 0

    fitted = thresholds.Thresholds(0.4, 0.7, "brand", "decided genuine checks", 30, "2026-12-01T00:00:00.000Z")
    thresholds.save(store, "acme", "m1", fitted, {}, actor="admin")
    refitted = thresholds.Thresholds(0.45, 0.75, "brand", "decided genuine checks", 40, "2026-12-02T00:00:00.000Z")
    thresholds.save(store, "acme", "m1", refitted, {}, actor="admin")  # replaces, never duplicates
    assert thresholds.stored(store, "acme", "m1") == refitted

    page, _ = audit.entries(store, action="key.")
    assert [e["action"] for e in page] == ["key.revoke", "key.create"]
    assert [e["action"] for e in audit.entries(store, action="calibration.brand")[0]] == ["calibration.brand"] * 2
    assert audit.entries(store, action="key")[0] == []  # an exact action, not a prefix


def test_reopening_runs_no_migration_again_and_a_newer_schema_is_refused(location, store):
    assert store.query("SELECT version FROM schema_migrations ORDER BY version") == [(m.version,) for m in schema.MIGRATIONS]
    store.create_brand("acme")
    again = Store(location)
    assert again.list_brands()[0]["brand"] == "acme" and schema.migrate(again.database) == 0
    again.query("INSERT INTO schema_migrations(version, description, applied_at) VALUES (?, 'from the future', 'x')",
                (schema.LATEST + 1,))
    again.close()
    with pytest.raises(InvalidInputError, match="newer than this release"):
        Store(location)


def test_writers_in_two_connections_are_serialised(location, store):
    """Two stores on one database (two processes, or two replicas): every upload counts once in the
    gallery version and a brand is created once, however their transactions interleave."""
    other = Store(location)
    store.create_brand("acme")
    created: list[str] = []
    errors: list[Exception] = []

    def upload(s: Store, offset: int) -> None:
        try:
            for i in range(10):
                s.add_references("acme", _items(offset + i), product=None, model="m1")
            try:
                s.create_brand("zenit")
                created.append("zenit")
            except ConflictError:
                pass
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(s, 100 * n)) for n, s in enumerate((store, other, store, other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == [] and created == ["zenit"]
    assert store.reference_count() == 40 and store.gallery_version() == 40


def test_a_postgresql_server_that_goes_away_is_a_typed_error_until_it_is_back():
    from tests.postgres_server import PostgresServer

    server = PostgresServer().start()
    try:
        store = Store(server.new_database())
        store.create_brand("acme")
        server.halt()
        with pytest.raises(StoreUnavailableError):
            store.create_brand("zenit")
        server.resume()
        store.create_brand("zenit")  # broken connections were replaced, nothing half-written was kept
        assert [b["brand"] for b in store.list_brands()] == ["acme", "zenit"]
        store.close()
    finally:
        server.stop()


def test_bad_or_unreachable_databases_are_typed_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="unsupported database URL"):
        Store("mysql://somewhere/db")
    with pytest.raises(StoreUnavailableError, match="cannot connect"):
        Store(f"postgresql://nobody@/db?host={tmp_path}")  # no server listens on that socket folder
