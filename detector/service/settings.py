"""Service settings: one object, filled from ``cfd serve`` flags (or constructed in tests)."""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from detector.errors import InvalidInputError
from detector.limits import Limits
from detector.store import store_location
from detector.webhooks import DeliveryPolicy


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./var")
    database: str | None = None  # a postgresql:// URL; None: the data directory's SQLite file
    model: str | None = None
    precision: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    limits: Limits = field(default_factory=Limits)
    max_batch: int = 32  # images per forward pass
    max_wait_ms: float = 5.0
    max_queue: int = 256  # images being checked (decoding, waiting, embedding) before 503 overloaded
    micro_batching: bool = True
    alignment: bool = True  # aligned verification of every check photo (heatmaps, regions)
    header_timeout_s: float = 10.0  # a connection must send a request's headers within this
    body_timeout_s: float = 30.0  # a request body may stall this long between chunks
    max_connections: int = 1000  # open connections; more are closed at once
    dev_no_auth: bool = False
    init_admin_key: Path | None = None
    check_retention_days: float | None = None  # undecided checks older than this are deleted (None: kept)
    prune_interval_s: float = 3600.0
    follow_interval_s: float = 1.0  # how often an idle service looks for gallery changes other processes made (SQLite;
    # PostgreSQL also wakes it at each change)
    webhooks: DeliveryPolicy = field(default_factory=DeliveryPolicy)

    @property
    def store_location(self) -> str | Path:
        return store_location(self.data_dir, self.database)

    @property
    def max_form_bytes(self) -> int:
        """The largest multipart body: a full check's files at their limit, plus room for fields and framing."""
        return self.limits.max_files_per_check * self.limits.max_file_bytes + 1024 * 1024


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    d, limits = Settings(), Limits()
    parser.add_argument("--host", default=d.host)
    parser.add_argument("--port", type=int, default=d.port)
    parser.add_argument("--max-file-bytes", type=int, default=limits.max_file_bytes)
    parser.add_argument("--max-pixels", type=int, default=limits.max_pixels, help="decoded pixels per image")
    parser.add_argument("--max-request-pixels", type=int, default=limits.max_request_pixels,
                        help="decoded pixels of all images of one request (413 beyond, before decoding)")
    parser.add_argument("--max-decoding-pixels", type=int, default=limits.max_decoding_pixels,
                        help="decoded pixels the whole process holds at once (decodes wait, then 503)")
    parser.add_argument("--max-files", type=int, default=limits.max_files_per_check, help="photos per check")
    parser.add_argument("--max-batch-bytes", type=int, default=limits.max_batch_bytes, help="JSON body of /v1/check/batch")
    parser.add_argument("--max-batch", type=int, default=d.max_batch, help="images per model forward pass")
    parser.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help="how long a batch waits to fill")
    parser.add_argument("--max-queue", type=int, default=d.max_queue,
                        help="images being checked at once before new checks get 503 overloaded")
    parser.add_argument("--header-timeout", type=float, default=d.header_timeout_s, metavar="SECONDS",
                        help="close a connection that has not sent a request's headers within this")
    parser.add_argument("--body-timeout", type=float, default=d.body_timeout_s, metavar="SECONDS",
                        help="answer 408 when a request body stalls this long")
    parser.add_argument("--max-connections", type=int, default=d.max_connections, help="open connections at most")
    parser.add_argument("--no-micro-batching", dest="micro_batching", action="store_false",
                        help="run each check's forward pass on its own")
    parser.add_argument("--no-alignment", dest="alignment", action="store_false",
                        help="skip aligned verification: checks cost their embedding alone and carry no heatmaps "
                             "(refused for a model whose calibration scores aligned photos)")
    parser.add_argument("--follow-interval", type=float, default=d.follow_interval_s, metavar="SECONDS",
                        help="how often the index looks for references other replicas (or a cfd) added or removed "
                             "between checks (on PostgreSQL it also follows each change as it is notified); a check "
                             "always looks first")
    parser.add_argument("--check-retention-days", type=float, default=None, metavar="DAYS",
                        help="delete undecided stored checks older than this, hourly (default: keep them)")
    parser.add_argument("--webhook-max-attempts", type=int, default=DeliveryPolicy().max_attempts,
                        help="attempts per webhook delivery before it is marked failed")
    parser.add_argument("--insecure-dev-no-auth", dest="dev_no_auth", action="store_true",
                        help="development only: accept requests without a key (loopback hosts only)")
    parser.add_argument("--init-admin-key", type=Path, default=None, metavar="FILE",
                        help="if no key exists yet, create an admin key and write it to FILE (mode 0600)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    if args.max_queue < args.max_files:
        raise InvalidInputError(f"--max-queue ({args.max_queue}) must hold one full check (--max-files {args.max_files})")
    if args.check_retention_days is not None and args.check_retention_days <= 0:
        raise InvalidInputError("--check-retention-days must be positive")
    if args.webhook_max_attempts < 1:
        raise InvalidInputError("--webhook-max-attempts must be at least 1")
    if min(args.max_batch, args.max_connections) < 1 or min(args.header_timeout, args.body_timeout, args.follow_interval) <= 0 \
            or args.max_wait_ms < 0:
        raise InvalidInputError("limits and timeouts must be positive and --max-wait-ms not negative")
    try:
        limits = Limits(max_file_bytes=args.max_file_bytes, max_pixels=args.max_pixels, max_files_per_check=args.max_files,
                        max_batch_bytes=args.max_batch_bytes, max_request_pixels=args.max_request_pixels, max_decoding_pixels=args.max_decoding_pixels)
    except ValueError as exc:
        raise InvalidInputError(f"invalid limits: {exc}") from None
    return Settings(
        data_dir=Path(args.data_dir), database=args.database, model=args.model, precision=args.precision, host=args.host, port=args.port,
        limits=limits, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        micro_batching=args.micro_batching, alignment=args.alignment, header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
        max_connections=args.max_connections, dev_no_auth=args.dev_no_auth, init_admin_key=args.init_admin_key,
        check_retention_days=args.check_retention_days, follow_interval_s=args.follow_interval, webhooks=DeliveryPolicy(max_attempts=args.webhook_max_attempts),
    )
