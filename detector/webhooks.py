"""Webhooks: a registered URL receives each stored check at or above its chosen verdict.

Deliveries are an outbox in the store's database, written in the check's own transaction, so a check on record
is never without its deliveries, and they survive a restart. A dispatcher thread posts them:
each body is signed with HMAC-SHA256 over ``"<timestamp>." + body`` (headers ``X-CFD-Timestamp``
and ``X-CFD-Signature: sha256=<hex>``), retried with exponential backoff until a 2xx answer or
``max_attempts``, and every attempt is logged. A delivery is claimed (its next attempt moved past
the request's timeout) before it is posted, so two processes on one database do not send it twice
at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from detector.database import Connection
from detector.errors import InvalidInputError, NotFoundError
from detector.store import Store, validate_brand_slug, write_audit
from detector.timestamps import utc_now

log = logging.getLogger(__name__)

VERDICT_RANK = {"genuine": 0, "unverifiable": 1, "suspicious": 2, "counterfeit": 3}
MAX_URL_LENGTH = 2000
RESPONSE_BYTES = 65536  # what is read of a receiver's answer, at most
MAX_BACKOFF_S = 3600.0


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 8
    retry_base_s: float = 2.0  # the wait after the first failure; it doubles each time
    timeout_s: float = 10.0
    poll_s: float = 0.5
    batch: int = 16  # deliveries claimed per round


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def validate_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except (ValueError, TypeError, AttributeError):  # e.g. an unclosed IPv6 bracket
        parts, host = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host or len(url) > MAX_URL_LENGTH:
        raise InvalidInputError(f"webhook url must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    return url


def create(store: Store, *, url: str, min_verdict: str, brand: str | None, actor: str) -> dict:
    """Register a hook; the answer carries its signing secret, which is never shown again."""
    validate_url(url)
    if min_verdict not in VERDICT_RANK:
        raise InvalidInputError(f"min_verdict must be one of {', '.join(VERDICT_RANK)}")
    if brand is not None:
        validate_brand_slug(brand)
    hook = {"id": secrets.token_hex(6), "url": url, "min_verdict": min_verdict, "brand": brand,
            "secret": secrets.token_urlsafe(32), "created_at": utc_now()}
    with store.transaction() as conn:
        conn.execute("INSERT INTO webhooks(id, url, min_verdict, brand, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (hook["id"], url, min_verdict, brand, hook["secret"], hook["created_at"]))
        write_audit(conn, actor, "webhook.create", hook["id"], url=url, min_verdict=min_verdict, brand=brand)
    return hook


def listed(store: Store) -> list[dict]:
    rows = store.query("SELECT id, url, min_verdict, brand, created_at FROM webhooks WHERE removed_at IS NULL ORDER BY created_at")
    return [dict(zip(("id", "url", "min_verdict", "brand", "created_at"), r)) for r in rows]


def remove(store: Store, hook_id: str, *, actor: str) -> None:
    """The hook stops receiving; pending deliveries are dropped, the delivery log stays."""
    with store.transaction() as conn:
        if conn.execute("UPDATE webhooks SET removed_at = ? WHERE id = ? AND removed_at IS NULL", (utc_now(), hook_id)).rowcount == 0:
            raise NotFoundError(f"no webhook {hook_id!r}")
        conn.execute("UPDATE webhook_deliveries SET state = 'cancelled' WHERE webhook_id = ? AND state = 'pending'", (hook_id,))
        write_audit(conn, actor, "webhook.remove", hook_id)


def deliveries(store: Store, hook_id: str, *, limit: int = 100) -> list[dict]:
    """The hook's deliveries, newest first, each with its attempts."""
    if not store.query("SELECT 1 FROM webhooks WHERE id = ?", (hook_id,)):
        raise NotFoundError(f"no webhook {hook_id!r}")
    rows = store.query("SELECT id, check_id, state, attempts, created_at FROM webhook_deliveries WHERE webhook_id = ? "
                       "ORDER BY id DESC LIMIT ?", (hook_id, limit))
    out = []
    for delivery_id, check_id, state, attempts, created_at in rows:
        tries = store.query("SELECT attempt, at, status, error FROM webhook_attempts WHERE delivery_id = ? ORDER BY attempt",
                            (delivery_id,))
        out.append({"id": delivery_id, "check_id": check_id, "state": state, "attempts": attempts, "created_at": created_at,
                    "log": [dict(zip(("attempt", "at", "status", "error"), t)) for t in tries]})
    return out


def enqueue(conn: Connection, *, check_id: int, brand: str | None, verdict: str, body: str) -> int:
    """Deliveries of one stored check to every hook it concerns, in the check's transaction."""
    rank = VERDICT_RANK[verdict]
    hooks = [h for h, min_verdict, hook_brand in conn.execute(
        "SELECT id, min_verdict, brand FROM webhooks WHERE removed_at IS NULL")
        if VERDICT_RANK[min_verdict] <= rank and (hook_brand is None or hook_brand == brand)]
    payload = ('{"event":"check","check_id":%d,"result":%s}' % (check_id, body)).encode()
    now = time.time()
    conn.executemany("INSERT INTO webhook_deliveries(webhook_id, check_id, body, state, next_attempt_at, created_at) "
                     "VALUES (?, ?, ?, 'pending', ?, ?)", [(h, check_id, payload, now, utc_now()) for h in hooks])
    return len(hooks)


class Dispatcher:
    """Posts due deliveries from a background thread until stopped."""

    def __init__(self, store: Store, policy: DeliveryPolicy = DeliveryPolicy()):
        self.store = store
        self.policy = policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.policy.timeout_s + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.deliver_due()
            except Exception:  # a database hiccup must not end deliveries for good
                log.exception("webhook delivery round failed")
                sent = 0
            if not sent:
                self._stop.wait(self.policy.poll_s)

    def deliver_due(self) -> int:
        """Claim and post the due deliveries; returns how many were attempted."""
        claimed = self._claim()
        for delivery_id, url, secret, body, attempts in claimed:
            status, error = self._post(url, secret, delivery_id, body)
            self._settle(delivery_id, attempts + 1, status, error)
        return len(claimed)

    def _claim(self) -> list[tuple]:
        now = time.time()
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT d.id, w.url, w.secret, d.body, d.attempts FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
                "WHERE d.state = 'pending' AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at LIMIT ?",
                (now, self.policy.batch)).fetchall()
            conn.executemany("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?",
                             [(now + self.policy.timeout_s * 2, r[0]) for r in rows])
        return rows

    def _post(self, url: str, secret: str, delivery_id: int, body: bytes) -> tuple[int | None, str | None]:
        timestamp = str(int(time.time()))
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "counterfeit-detector-webhooks",
            "X-CFD-Delivery": str(delivery_id), "X-CFD-Timestamp": timestamp, "X-CFD-Signature": sign(secret, timestamp, body)})
        try:
            with urllib.request.urlopen(request, timeout=self.policy.timeout_s) as response:
                response.read(RESPONSE_BYTES)
                return response.status, None
        except urllib.error.HTTPError as exc:
            return exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return None, str(getattr(exc, "reason", exc))[:500]

    def _settle(self, delivery_id: int, attempt: int, status: int | None, error: str | None) -> None:
        delivered = status is not None and 200 <= status < 300
        with self.store.transaction() as conn:
            conn.execute("INSERT INTO webhook_attempts(delivery_id, attempt, at, status, error) VALUES (?, ?, ?, ?, ?)",
                         (delivery_id, attempt, utc_now(), status, error))
            if delivered:
                state, next_at = "delivered", 0.0
            elif attempt >= self.policy.max_attempts:
                state, next_at = "failed", 0.0
            else:
                state, next_at = "pending", time.time() + min(self.policy.retry_base_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
            conn.execute("UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_at = ? WHERE id = ? AND state = 'pending'",
                         (state, attempt, next_at, delivery_id))
        if not delivered:
            log.warning("webhook delivery %d attempt %d failed (%s)", delivery_id, attempt, error)
