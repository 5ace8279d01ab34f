"""``cfd serve``: refuse insecure set-ups, then run uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from detector.errors import InvalidInputError
from detector.keys import create_key
from detector.service.settings import Settings, is_loopback, settings_from_args
from detector.store import Store

log = logging.getLogger("detector.service")


def prepare(settings: Settings) -> None:
    """Secure by default: a key must exist, unless the dev flag is given on a loopback host."""
    if settings.dev_no_auth and not is_loopback(settings.host):
        raise InvalidInputError(f"--insecure-dev-no-auth only works bound to loopback, not {settings.host}")
    store = Store(settings.store_location)
    try:
        if store.active_key_count() == 0 and settings.init_admin_key is not None:
            key, record = create_key(store, role="admin")
            write_secret(settings.init_admin_key, key)
            log.warning("no API key existed: created admin key %s, written to %s", record.id, settings.init_admin_key)
        if store.active_key_count() == 0 and not settings.dev_no_auth:
            raise InvalidInputError(
                f"no API key exists in {settings.data_dir if settings.database is None else 'the database'}: create one with "
                f"'cfd keys create --role admin --data-dir {settings.data_dir}"
                f"{'' if settings.database is None else ' --database URL'}', or pass --init-admin-key FILE"
            )
    finally:
        store.close()


def write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from detector.compute import take_intra_op_threads
    from detector.service.app import create_app
    from detector.service.connections import guarded_protocol

    settings = settings_from_args(args)
    prepare(settings)
    compute = take_intra_op_threads()  # before uvicorn's threads exist
    protocol = guarded_protocol(header_timeout_s=settings.header_timeout_s, max_connections=settings.max_connections)
    uvicorn.run(create_app(settings, compute=compute), host=settings.host, port=settings.port, log_level="info", http=protocol,
                timeout_graceful_shutdown=10)
