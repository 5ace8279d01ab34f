"""The source of truth: brands, references (with embeddings), API keys, stored checks and
reviewers' decisions, per-brand thresholds, webhooks and the audit log, in SQLite (the embedded
default) or PostgreSQL (``detector.database``; the schema is ``detector.database.schema``).

A committed transaction is durable. Every change to the gallery bumps ``gallery_version`` in the
same transaction, so a cached FAISS index (this process's, or another replica's) knows whether
it is stale.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from detector.database import Connection, Database, open_database
from detector.errors import ConflictError, InvalidInputError, NotFoundError, UnknownBrandError
from detector.timestamps import utc_now

log = logging.getLogger(__name__)

BRAND_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_PRODUCT_LENGTH = 200
MAX_LISTING_ID_LENGTH = 200
MAX_DISPLAY_NAME_LENGTH = 200
DB_FILE = "db.sqlite3"
MAX_ID = 2**63 - 1  # the largest SQLite integer: ids and cursors beyond it are refused, not overflowed

def store_location(data_dir: str | Path, database: str | None = None) -> str | Path:
    """Where a data directory's store lives: ``database`` (a PostgreSQL URL), else its own SQLite file."""
    return database or Path(data_dir) / DB_FILE


# Who made a write that did not come through the API (a ``cfd`` command, a script on the machine).
LOCAL_ACTOR = "local"


def write_audit(conn: Connection, actor: str, action: str, target: str, **detail) -> None:
    """One audit row, in the caller's transaction: the write and its record commit together."""
    conn.execute("INSERT INTO audit(at, key_id, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                 (utc_now(), actor, action, target, json.dumps(detail, sort_keys=True)))


def bump_counter(conn: Connection, key: str) -> None:
    """Count one change of ``key`` (``gallery_version``, ``evidence_version``) in the caller's transaction."""
    conn.execute("UPDATE meta SET value = CAST(value AS BIGINT) + 1 WHERE key = ?", (key,))


def validate_brand_slug(slug: str) -> str:
    if not isinstance(slug, str) or not BRAND_SLUG.match(slug):
        raise InvalidInputError(
            f"invalid brand {slug!r}: use 1-64 lowercase letters, digits and '-', starting with a letter or digit"
        )
    return slug


def validate_listing_id(listing_id: str | None) -> str | None:
    if listing_id is not None and (len(listing_id) > MAX_LISTING_ID_LENGTH or not listing_id.isprintable()):
        raise InvalidInputError(f"invalid listing_id: at most {MAX_LISTING_ID_LENGTH} printable characters")
    return listing_id


def validate_product(product: str | None) -> str | None:
    if product is None or product == "":
        return None
    if len(product) > MAX_PRODUCT_LENGTH or any(ord(c) < 32 for c in product):
        raise InvalidInputError(f"invalid product: at most {MAX_PRODUCT_LENGTH} printable characters")
    return product


@dataclass(frozen=True)
class Reference:
    id: int
    brand: str
    product: str | None
    sha256: str
    width: int
    height: int
    created_at: str
    duplicate: bool = False

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "brand": self.brand,
            "product": self.product,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "created_at": self.created_at,
            "duplicate": self.duplicate,
        }


@dataclass(frozen=True)
class NewReference:
    sha256: str
    width: int
    height: int
    embedding: np.ndarray
    patches: np.ndarray | None = None  # (P, patch_dim + 1) patch records, if the model has a patch head


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    key_hash: str
    role: str
    brand: str | None
    created_at: str
    revoked_at: str | None


_REF_COLUMNS = "id, brand, product, sha256, width, height, created_at"


def _digest_used(conn: Connection, digest: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM refs WHERE sha256 = ? UNION ALL SELECT 1 FROM check_photos WHERE sha256 = ? LIMIT 1",
                             (digest, digest)).fetchone())


def _reference(row: tuple, duplicate: bool = False) -> Reference:
    return Reference(row[0], row[1], row[2], row[3], row[4], row[5], row[6], duplicate)


class Store:
    """``location``: a ``postgresql://`` URL, or a SQLite file's path."""

    def __init__(self, location: str | Path):
        self.location = location
        self.database: Database = open_database(location)

    def close(self) -> None:
        self.database.close()

    def transaction(self):
        """One write transaction (serialised with every other writer's, in any process)."""
        return self.database.transaction()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.database.query(sql, params)

    @staticmethod
    def _bump_version(conn: Connection) -> None:
        bump_counter(conn, "gallery_version")

    def _counter(self, key: str) -> int:
        return int(self.query("SELECT value FROM meta WHERE key = ?", (key,))[0][0])

    def gallery_version(self) -> int:
        return self._counter("gallery_version")

    def evidence_version(self) -> int:
        """Bumped by every reviewer decision (``detector.checks``)."""
        return self._counter("evidence_version")

    # --- brands ---

    def create_brand(self, slug: str, display_name: str | None = None, *, actor: str = LOCAL_ACTOR) -> dict:
        validate_brand_slug(slug)
        display_name = slug if display_name is None or display_name == "" else display_name
        if len(display_name) > MAX_DISPLAY_NAME_LENGTH:
            raise InvalidInputError(f"display_name is longer than {MAX_DISPLAY_NAME_LENGTH} characters")
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM brands WHERE slug = ?", (slug,)).fetchone():
                raise ConflictError(f"brand {slug!r} already exists")
            conn.execute("INSERT INTO brands(slug, display_name, created_at) VALUES (?, ?, ?)", (slug, display_name, utc_now()))
            write_audit(conn, actor, "brand.create", slug, display_name=display_name)
        return {"brand": slug, "display_name": display_name, "reference_count": 0}

    def require_brand(self, slug: str) -> None:
        validate_brand_slug(slug)
        if not self.query("SELECT 1 FROM brands WHERE slug = ?", (slug,)):
            raise UnknownBrandError(f"unknown brand {slug!r}")

    def brand_exists(self, slug: str) -> bool:
        return bool(BRAND_SLUG.match(slug or "")) and bool(self.query("SELECT 1 FROM brands WHERE slug = ?", (slug,)))

    def list_brands(self) -> list[dict]:
        rows = self.query(
            "SELECT b.slug, b.display_name, COUNT(r.id) FROM brands b LEFT JOIN refs r ON r.brand = b.slug "
            "GROUP BY b.slug ORDER BY b.slug"
        )
        return [{"brand": s, "display_name": d, "reference_count": n} for s, d, n in rows]

    def delete_brand(self, slug: str, *, actor: str = LOCAL_ACTOR) -> list[str]:
        """Delete a brand, its references and its keys (a brand created again later starts with none);
        returns sha256s no longer referenced by anyone."""
        self.require_brand(slug)
        with self.transaction() as conn:
            shas = [r[0] for r in conn.execute("SELECT DISTINCT sha256 FROM refs WHERE brand = ?", (slug,))]
            conn.execute("DELETE FROM brands WHERE slug = ?", (slug,))
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE brand = ? AND revoked_at IS NULL", (utc_now(), slug))
            self._bump_version(conn)
            write_audit(conn, actor, "brand.delete", slug, references=len(shas))
            return [s for s in shas if not _digest_used(conn, s)]

    # --- references ---

    def add_references(self, brand: str, items: list[NewReference], *, product: str | None, model: str,
                       actor: str = LOCAL_ACTOR) -> list[Reference]:
        """Insert all items in one transaction; identical bytes already in the brand come back as duplicates."""
        product = validate_product(product)
        results: list[Reference] = []
        with self.transaction() as conn:
            if not conn.execute("SELECT 1 FROM brands WHERE slug = ?", (brand,)).fetchone():
                raise UnknownBrandError(f"unknown brand {brand!r}")
            for item in items:
                existing = conn.execute(
                    f"SELECT {_REF_COLUMNS} FROM refs WHERE brand = ? AND sha256 = ?", (brand, item.sha256)
                ).fetchone()
                if existing:
                    results.append(_reference(existing, duplicate=True))
                    continue
                row = conn.execute(
                    "INSERT INTO refs(brand, product, sha256, width, height, created_at, model, embedding) "
                    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_REF_COLUMNS}",
                    (brand, product, item.sha256, item.width, item.height, utc_now(), model,
                     np.asarray(item.embedding, np.float32).tobytes()),
                ).fetchone()
                results.append(_reference(row))
            if any(not r.duplicate for r in results):
                self._bump_version(conn)
                write_audit(conn, actor, "reference.add", brand, ids=[r.id for r in results if not r.duplicate])
        return results

    def list_references(self, brand: str, *, limit: int = 100, after: int | None = None) -> list[Reference]:
        self.require_brand(brand)
        rows = self.query(
            f"SELECT {_REF_COLUMNS} FROM refs WHERE brand = ? AND id > ? ORDER BY id LIMIT ?",
            (brand, after or 0, limit),
        )
        return [_reference(r) for r in rows]

    def get_reference(self, brand: str, ref_id: int) -> Reference:
        self.require_brand(brand)
        rows = self.query(f"SELECT {_REF_COLUMNS} FROM refs WHERE brand = ? AND id = ?", (brand, ref_id))
        if not rows:
            raise NotFoundError(f"reference {ref_id} not found in brand {brand!r}")
        return _reference(rows[0])

    def references_by_ids(self, ids: list[int]) -> dict[int, Reference]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return {r[0]: _reference(r) for r in self.query(f"SELECT {_REF_COLUMNS} FROM refs WHERE id IN ({marks})", tuple(ids))}

    def delete_reference(self, brand: str, ref_id: int, *, actor: str = LOCAL_ACTOR) -> str | None:
        """Delete one reference; returns its sha256 if no other reference uses those bytes."""
        self.require_brand(brand)
        with self.transaction() as conn:
            row = conn.execute("SELECT sha256 FROM refs WHERE brand = ? AND id = ?", (brand, ref_id)).fetchone()
            if row is None:
                raise NotFoundError(f"reference {ref_id} not found in brand {brand!r}")
            conn.execute("DELETE FROM refs WHERE id = ?", (ref_id,))
            self._bump_version(conn)
            write_audit(conn, actor, "reference.delete", brand, id=ref_id)
            return None if _digest_used(conn, row[0]) else row[0]

    def reference_counts(self, *, model: str) -> tuple[dict[str, int], int]:
        """References embedded by ``model``, counted per brand, and the largest id (0 if none)."""
        rows = self.query("SELECT brand, COUNT(*), MAX(id) FROM refs WHERE model = ? GROUP BY brand", (model,))
        return {brand: count for brand, count, _ in rows}, max((top for _, _, top in rows), default=0)

    def reference_ids(self, *, model: str) -> tuple[np.ndarray, list[str]]:
        """(ids, brands) of the references embedded by ``model``, without their vectors."""
        rows = self.query("SELECT id, brand FROM refs WHERE model = ? ORDER BY id", (model,))
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def iter_embeddings(self, dim: int, *, model: str, ids: np.ndarray | None = None,
                        chunk: int = 8192) -> Iterator[tuple[np.ndarray, list[str], np.ndarray]]:
        """(ids, brands, embeddings (n, dim) float32) of the references embedded by ``model`` (only
        ``ids``, if given), a chunk at a time in id order: a bulk load of a million references never
        holds them all as Python objects. A vector of another size is reported and left out."""
        if ids is not None:
            ids = np.unique(np.asarray(ids, np.int64))
            pages = (f"SELECT id, brand, embedding FROM refs WHERE model = ? AND id IN ({','.join(map(str, part.tolist()))})"
                     for part in np.array_split(ids, max(1, -(-len(ids) // 512))) if len(part))
            batches = (self.query(sql, (model,)) for sql in pages)
        else:
            batches = self._pages("SELECT id, brand, embedding FROM refs WHERE model = ? AND id > ? ORDER BY id LIMIT ?",
                                  model, chunk)
        for rows in batches:
            wrong = [r[0] for r in rows if len(r[2]) != 4 * dim]
            if wrong:
                log.error("references %s have embeddings of another size; they stay out of the index", wrong[:10])
                rows = [r for r in rows if len(r[2]) == 4 * dim]
            if rows:
                yield (np.array([r[0] for r in rows], np.int64), [r[1] for r in rows],
                       np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(len(rows), dim))

    def _pages(self, sql: str, model: str, chunk: int) -> Iterator[list[tuple]]:
        after = 0
        while rows := self.query(sql, (model, after, chunk)):
            yield rows
            after = rows[-1][0]

    def brand_embeddings(self, brand: str, *, model: str) -> list[tuple[int, str, np.ndarray]]:
        """(id, sha256, embedding) of a brand's references embedded by ``model``."""
        rows = self.query("SELECT id, sha256, embedding FROM refs WHERE brand = ? AND model = ? ORDER BY id", (brand, model))
        return [(r[0], r[1], np.frombuffer(r[2], np.float32)) for r in rows]

    def stale_references(self, model: str) -> list[tuple[int, str]]:
        """(id, sha256) of references embedded by another model."""
        return [(r[0], r[1]) for r in self.query("SELECT id, sha256 FROM refs WHERE model != ? ORDER BY id", (model,))]

    def update_embeddings(self, updates: list[tuple[int, np.ndarray]], *, model: str) -> None:
        with self.transaction() as conn:
            for ref_id, embedding in updates:
                conn.execute("UPDATE refs SET embedding = ?, patches = NULL, model = ? WHERE id = ?",
                             (np.asarray(embedding, np.float32).tobytes(), model, ref_id))
            self._bump_version(conn)

    def patches_in_rows(self, *, model: str, limit: int = 256) -> list[tuple[int, str, bytes]]:
        """(id, sha256, patch records) still kept in reference rows (a database from before the patch
        store), up to ``limit``; ``clear_row_patches`` once they are stored elsewhere."""
        return self.query("SELECT id, sha256, patches FROM refs WHERE patches IS NOT NULL AND model = ? LIMIT ?", (model, limit))

    def clear_row_patches(self, ids: list[int]) -> None:
        with self.transaction() as conn:
            conn.executemany("UPDATE refs SET patches = NULL WHERE id = ?", [(i,) for i in ids])

    def used_digests(self) -> set[str]:
        """Digests of every stored original: references' and stored checks' photos."""
        return {r[0] for r in self.query("SELECT sha256 FROM refs UNION SELECT sha256 FROM check_photos")}

    def reference_digests(self) -> set[str]:
        return {r[0] for r in self.query("SELECT DISTINCT sha256 FROM refs")}

    def used_digests_among(self, digests: list[str]) -> set[str]:
        if not digests:
            return set()
        marks = ",".join("?" * len(digests))
        return {r[0] for r in self.query(f"SELECT sha256 FROM refs WHERE sha256 IN ({marks}) UNION "
                                          f"SELECT sha256 FROM check_photos WHERE sha256 IN ({marks})", tuple(digests) * 2)}

    def reference_count(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM refs")[0][0])

    # --- API keys ---

    def add_api_key(self, record: ApiKeyRecord, *, actor: str = LOCAL_ACTOR) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO api_keys(id, key_hash, role, brand, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, NULL)",
                (record.id, record.key_hash, record.role, record.brand, record.created_at),
            )
            write_audit(conn, actor, "key.create", record.id, role=record.role, brand=record.brand)

    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        rows = self.query("SELECT id, key_hash, role, brand, created_at, revoked_at FROM api_keys WHERE key_hash = ?", (key_hash,))
        return ApiKeyRecord(*rows[0]) if rows else None

    def list_api_keys(self) -> list[ApiKeyRecord]:
        return [ApiKeyRecord(*r) for r in self.query("SELECT id, key_hash, role, brand, created_at, revoked_at FROM api_keys ORDER BY created_at")]

    def revoke_api_key(self, key_id: str, *, actor: str = LOCAL_ACTOR) -> None:
        with self.transaction() as conn:
            cursor = conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (utc_now(), key_id))
            if cursor.rowcount == 0:
                raise NotFoundError(f"no active API key with id {key_id!r}")
            write_audit(conn, actor, "key.revoke", key_id)

    def active_key_count(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")[0][0])
