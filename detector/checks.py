"""Checks on record: every check's photos, embeddings, signals and result, reviewers' decisions.

Same durability order as a reference upload (``detector.gallery``): the photos' originals are
written and fsynced holding the data directory's lock shared, then one transaction stores the
check, its photos, its decision (for a genuine example) and its webhook deliveries, so a result
that carries a ``check_id`` is on record. Decisions are append-only; a check's ``decision``
column is the latest one. Each decision bumps ``evidence_version``, which the known-counterfeit
matcher follows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import numpy as np

from detector.blobs import BlobStore, delete_unused, sha256_hex
from detector.datalock import DataDirLock
from detector.errors import InvalidInputError, NotFoundError
from detector.results import CheckResult
from detector.store import MAX_ID, Store, bump_counter, validate_brand_slug, write_audit
from detector.timestamps import iso_utc, utc_now
from detector import webhooks

DECISIONS = ("genuine", "counterfeit")
VERDICTS = ("genuine", "suspicious", "counterfeit", "unverifiable")
DECISION_FILTERS = ("undecided", "decided", *DECISIONS)
SOURCES = ("check", "example")
MAX_NOTE_LENGTH = 2000
KIND_PATTERN = "^[a-z0-9][a-z0-9_-]{0,63}$"
DEFAULT_COUNTERFEIT_KIND = "reviewed"


@dataclass(frozen=True)
class StoredPhoto:
    """What a check keeps of one photo: enough to re-score it, match it and export it."""

    data: bytes
    phash: int
    embedding: np.ndarray
    logit: float | None
    patches: np.ndarray | None
    signals: dict[str, float]


@dataclass(frozen=True)
class Decision:
    decision: str
    kind: str | None = None
    note: str | None = None

    def validated(self) -> "Decision":
        if self.decision not in DECISIONS:
            raise InvalidInputError(f"decision must be one of {', '.join(DECISIONS)}, not {self.decision!r}")
        if self.kind is not None and (self.decision != "counterfeit" or not re.match(KIND_PATTERN, self.kind)):
            raise InvalidInputError("kind names a counterfeit's kind (1-64 lowercase letters, digits, '_' or '-') "
                                    "and goes only with a counterfeit decision")
        if self.note is not None and (len(self.note) > MAX_NOTE_LENGTH or "\x00" in self.note):
            raise InvalidInputError(f"note: at most {MAX_NOTE_LENGTH} characters, no NUL")
        return self


@dataclass(frozen=True)
class CheckFilter:
    brand: str | None = None
    verdict: str | None = None  # one verdict, or several separated by commas
    decision: str | None = None  # undecided, decided, genuine or counterfeit
    since: str | None = None  # ISO 8601 times, inclusive / exclusive
    until: str | None = None
    key_id: str | None = None  # only checks this key asked for
    claimed: bool | None = None  # True: only checks whose listing claimed the brand


@dataclass(frozen=True)
class PhotoRecord:
    check_id: int
    index: int
    sha256: str
    phash: int
    embedding: np.ndarray
    logit: float | None
    patches: np.ndarray | None


class CheckLog:
    def __init__(self, store: Store, blobs: BlobStore, lock: DataDirLock):
        self.store = store
        self.blobs = blobs
        self.lock = lock

    # --- writing ---

    def record(self, result: CheckResult, photos: Sequence[StoredPhoto], *, claimed: bool, model: str, gallery_version: int,
               key_id: str, source: str = "check", decision: Decision | None = None) -> int:
        """Store a check (and, for a genuine example, its decision); returns its id and sets ``result.check_id``.
        ``claimed``: the listing claimed ``result.brand`` (else it is the predicted brand)."""
        if source not in SOURCES:
            raise InvalidInputError(f"source must be one of {SOURCES}")
        digests = [sha256_hex(p.data) for p in photos]
        try:
            with self.lock.shared():
                for photo in photos:
                    self.blobs.put(photo.data)
                with self.store.transaction() as conn:
                    check_id = int(conn.execute(
                        "INSERT INTO checks(listing_id, brand, claimed, verdict, score, model_name, model_version, model, "
                        "gallery_version, key_id, source, created_at, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '') "
                        "RETURNING id",
                        (result.listing_id, result.brand, int(claimed), result.verdict, result.counterfeit_score, result.model.name,
                         result.model.version, model, gallery_version, key_id, source, utc_now())).fetchone()[0])
                    result.check_id = check_id
                    body = result.model_dump_json()
                    conn.execute("UPDATE checks SET result = ? WHERE id = ?", (body, check_id))
                    conn.executemany(
                        "INSERT INTO check_photos(check_id, idx, sha256, phash, embedding, logit, patches, signals) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [(check_id, i, digest, p.phash, np.asarray(p.embedding, np.float32).tobytes(), p.logit,
                          None if p.patches is None else np.asarray(p.patches, np.float16).tobytes(), json.dumps(p.signals))
                         for i, (p, digest) in enumerate(zip(photos, digests))])
                    if decision is not None:
                        self._decide(conn, check_id, decision.validated(), actor=key_id)
                    webhooks.enqueue(conn, check_id=check_id, brand=result.brand, verdict=result.verdict, body=body)
                    return check_id
        except BaseException:
            result.check_id = None
            self._delete_unused(digests)
            raise

    def decide(self, check_id: int, decision: Decision, *, actor: str) -> dict[str, Any]:
        decision = decision.validated()
        with self.store.transaction() as conn:
            if not conn.execute("SELECT 1 FROM checks WHERE id = ?", (check_id,)).fetchone():
                raise NotFoundError(f"check {check_id} not found")
            return self._decide(conn, check_id, decision, actor=actor)

    @staticmethod
    def _decide(conn, check_id: int, decision: Decision, *, actor: str) -> dict[str, Any]:
        at = utc_now()
        kind = decision.kind or (DEFAULT_COUNTERFEIT_KIND if decision.decision == "counterfeit" else None)
        decision_id = conn.execute("INSERT INTO decisions(check_id, decision, kind, note, key_id, created_at) "
                                   "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                                   (check_id, decision.decision, kind, decision.note, actor, at)).fetchone()[0]
        conn.execute("UPDATE checks SET decision = ? WHERE id = ?", (decision.decision, check_id))
        bump_counter(conn, "evidence_version")
        write_audit(conn, actor, "decision.add", f"check/{check_id}", decision=decision.decision, kind=kind)
        return {"id": int(decision_id), "check_id": check_id, "decision": decision.decision, "kind": kind,
                "note": decision.note, "key_id": actor, "created_at": at}

    def update_result(self, check_id: int, result: CheckResult, *, gallery_version: int, actor: str, old_verdict: str) -> None:
        """A re-scored result replaces the one on record; the audit log keeps the verdict it had."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE checks SET verdict = ?, score = ?, result = ?, gallery_version = ?, rescored_at = ? WHERE id = ?",
                         (result.verdict, result.counterfeit_score, result.model_dump_json(), gallery_version, utc_now(), check_id))
            write_audit(conn, actor, "check.rescore", f"check/{check_id}", verdict_before=old_verdict, verdict_after=result.verdict)

    def prune(self, *, older_than_days: float, actor: str) -> int:
        """Delete undecided checks older than the retention (decided ones are evidence: they stay)."""
        if older_than_days <= 0:
            raise InvalidInputError("the retention must be a positive number of days")
        cutoff = iso_utc(datetime.now(timezone.utc) - timedelta(days=older_than_days))
        with self.store.transaction() as conn:
            # ``decision`` is set with every decision, in its transaction: NULL means never decided
            ids = [r[0] for r in conn.execute("SELECT id FROM checks WHERE decision IS NULL AND created_at < ?", (cutoff,))]
            digests = {r[0] for chunk in _chunks(ids) for r in conn.execute(
                f"SELECT sha256 FROM check_photos WHERE check_id IN ({','.join('?' * len(chunk))})", chunk)}
            deleted = 0
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                conn.execute(f"DELETE FROM webhook_deliveries WHERE check_id IN ({marks}) AND state != 'pending'", chunk)
                # a check whose webhook is still being delivered stays until that delivery ends
                deleted += conn.execute(f"DELETE FROM checks WHERE id IN ({marks}) AND NOT EXISTS "
                                        "(SELECT 1 FROM webhook_deliveries w WHERE w.check_id = checks.id)", chunk).rowcount
            if deleted:
                write_audit(conn, actor, "checks.prune", "checks", older_than_days=older_than_days, deleted=deleted)
        self._delete_unused(sorted(digests))
        return deleted

    def _delete_unused(self, digests: Sequence[str]) -> None:
        delete_unused(self.blobs, self.lock, digests, in_use=self.store.used_digests_among)

    # --- reading ---

    def get(self, check_id: int) -> dict[str, Any]:
        rows = self.store.query(f"SELECT {_COLUMNS} FROM checks WHERE id = ?", (check_id,))
        if not rows:
            raise NotFoundError(f"check {check_id} not found")
        record = _record(rows[0])
        record["decisions"] = self.decisions(check_id)
        return record

    def decisions(self, check_id: int) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT id, check_id, decision, kind, note, key_id, created_at FROM decisions "
                                 "WHERE check_id = ? ORDER BY id", (check_id,))
        return [dict(zip(("id", "check_id", "decision", "kind", "note", "key_id", "created_at"), r)) for r in rows]

    def list(self, where: CheckFilter, *, limit: int = 50, before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first; ``before``: the cursor (a check id) from the previous page. -> (page, next cursor)."""
        clauses, params = ["id < ?"], [before if before is not None else MAX_ID]
        if where.brand is not None:
            clauses.append("brand = ?")
            params.append(validate_brand_slug(where.brand))
        if where.verdict is not None:
            verdicts = where.verdict.split(",")
            if not set(verdicts) <= set(VERDICTS):
                raise InvalidInputError(f"verdict filter: one or more of {', '.join(VERDICTS)}, separated by commas")
            clauses.append(f"verdict IN ({','.join('?' * len(verdicts))})")
            params.extend(verdicts)
        if where.decision is not None:
            if where.decision not in DECISION_FILTERS:
                raise InvalidInputError(f"decision filter must be one of {', '.join(DECISION_FILTERS)}")
            clauses.append({"undecided": "decision IS NULL", "decided": "decision IS NOT NULL"}.get(where.decision, "decision = ?"))
            if where.decision in DECISIONS:
                params.append(where.decision)
        for bound, op in ((where.since, ">="), (where.until, "<")):
            if bound is not None:
                clauses.append(f"created_at {op} ?")
                params.append(normalise_time(bound))
        if where.key_id is not None:
            clauses.append("key_id = ?")
            params.append(where.key_id)
        if where.claimed is not None:
            clauses.append("claimed = ?")
            params.append(int(where.claimed))
        rows = self.store.query(f"SELECT {_COLUMNS} FROM checks WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?",
                                 (*params, limit + 1))
        page = [_record(r) for r in rows[:limit]]
        return page, (page[-1]["id"] if len(rows) > limit else None)

    def photos(self, check_ids: Sequence[int]) -> dict[int, list[PhotoRecord]]:
        out: dict[int, list[PhotoRecord]] = {}
        for chunk in _chunks(list(check_ids)):
            rows = self.store.query(
                f"SELECT check_id, idx, sha256, phash, embedding, logit, patches FROM check_photos "
                f"WHERE check_id IN ({','.join('?' * len(chunk))}) ORDER BY check_id, idx", tuple(chunk))
            for r in rows:
                out.setdefault(r[0], []).append(PhotoRecord(
                    r[0], r[1], r[2], r[3], np.frombuffer(r[4], np.float32),
                    r[5], None if r[6] is None else np.frombuffer(r[6], np.float16)))
        return out

    def photo_digest(self, check_id: int, index: int) -> str:
        rows = self.store.query("SELECT sha256 FROM check_photos WHERE check_id = ? AND idx = ?", (check_id, index))
        if not rows:
            raise NotFoundError(f"check {check_id} has no photo {index}")
        return rows[0][0]

    def photo_bytes(self, check_id: int, index: int) -> bytes:
        return self.blobs.get(self.photo_digest(check_id, index))

    def decided(self, *, brand: str | None = None, decision: str | None = None, latest: int | None = None) -> list[dict[str, Any]]:
        """Decided checks (the latest decision and its kind), oldest first; ``latest``: only the most recent N."""
        clauses, params = ["c.decision IS NOT NULL"], []
        if brand is not None:
            clauses.append("c.brand = ?")
            params.append(brand)
        if decision is not None:
            clauses.append("c.decision = ?")
            params.append(decision)
        rows = self.store.query(
            "SELECT c.id, c.brand, c.decision, c.model, (SELECT d.kind FROM decisions d WHERE d.check_id = c.id "
            f"ORDER BY d.id DESC LIMIT 1) FROM checks c WHERE {' AND '.join(clauses)} ORDER BY c.id DESC LIMIT ?",
            (*params, MAX_ID if latest is None else latest))
        return [{"id": r[0], "brand": r[1], "decision": r[2], "model": r[3], "kind": r[4]} for r in reversed(rows)]

    def brand_stats(self, brand: str, *, days: int) -> dict[str, Any]:
        """Checks claiming the brand per day by verdict over the last ``days`` days, and how reviewers
        decided each verdict (all time)."""
        since = iso_utc(datetime.now(timezone.utc) - timedelta(days=days))
        per_day: dict[str, dict[str, int]] = {}
        for day, verdict, count in self.store.query(
                "SELECT substr(created_at, 1, 10), verdict, COUNT(*) FROM checks WHERE brand = ? AND claimed = 1 "
                "AND created_at >= ? GROUP BY 1, 2 ORDER BY 1", (brand, since)):
            per_day.setdefault(day, {v: 0 for v in VERDICTS})[verdict] = count
        outcomes = {v: {"genuine": 0, "counterfeit": 0, "undecided": 0} for v in VERDICTS}
        for verdict, decision, count in self.store.query(
                "SELECT verdict, decision, COUNT(*) FROM checks WHERE brand = ? AND claimed = 1 GROUP BY 1, 2", (brand,)):
            outcomes[verdict][decision or "undecided"] = count
        return {"brand": brand, "days": [{"date": d, **counts} for d, counts in per_day.items()], "outcomes": outcomes}

    def models_of(self, check_ids: Sequence[int]) -> dict[int, str]:
        """Which model embedded each check's photos."""
        return {r[0]: r[1] for chunk in _chunks(list(check_ids)) if chunk
                for r in self.store.query(f"SELECT id, model FROM checks WHERE id IN ({','.join('?' * len(chunk))})", chunk)}

    def ids_of_brand(self, brand: str, *, model: str | None = None) -> list[int]:
        """The brand's checks (only those whose embeddings ``model`` made, if given), oldest first."""
        where, params = ("AND model = ?", (brand, model)) if model is not None else ("", (brand,))
        return [r[0] for r in self.store.query(f"SELECT id FROM checks WHERE brand = ? {where} ORDER BY id", params)]


_COLUMNS = ("id, listing_id, brand, claimed, verdict, score, model_name, model_version, gallery_version, key_id, source, "
            "created_at, rescored_at, decision, result")


def _record(row: tuple) -> dict[str, Any]:
    (check_id, listing_id, brand, claimed, verdict, score, model_name, model_version, gallery_version, key_id, source,
     created_at, rescored_at, decision, result) = row
    return {"id": check_id, "listing_id": listing_id, "brand": brand, "claimed": bool(claimed), "verdict": verdict, "counterfeit_score": score,
            "model": {"name": model_name, "version": model_version}, "gallery_version": gallery_version,
            "key_id": key_id, "source": source, "created_at": created_at, "rescored_at": rescored_at,
            "decision": decision, "result": json.loads(result)}


def normalise_time(text: str) -> str:
    """An ISO 8601 time (with a zone, or UTC) in the stored form, so that text order is time order."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise InvalidInputError(f"invalid time {text!r}: use ISO 8601, e.g. 2026-12-01T00:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return iso_utc(moment)


def _chunks(items: list, size: int = 500) -> list[tuple]:
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]
