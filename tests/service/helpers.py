"""Helpers for service tests: keys, multipart bodies, a real uvicorn server on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from detector.keys import create_key
from detector.store import Store, store_location

CFD = str(Path(sys.executable).parent / "cfd")


def make_keys(data_dir: Path, brands: tuple[str, ...] = ("acme", "zenit"), *, database: str | None = None) -> dict[str, str]:
    """Create the brands and one key per role (brand keys for the first two brands), in the data
    directory's SQLite file or in ``database`` (a PostgreSQL URL)."""
    store = Store(store_location(data_dir, database))
    try:
        for brand in brands:
            if not store.brand_exists(brand):
                store.create_brand(brand)
        keys = {"admin": create_key(store, role="admin")[0], "pipeline": create_key(store, role="pipeline")[0],
                "brand": create_key(store, role="brand", brand=brands[0])[0],
                "other_brand": create_key(store, role="brand", brand=brands[1])[0]}
        revoked, record = create_key(store, role="admin")
        store.revoke_api_key(record.id)
        keys["revoked"] = revoked
    finally:
        store.close()
    return keys


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def photo_files(*photos: bytes, content_type: str = "image/png") -> list:
    return [("files", (f"p{i}.png", data, content_type)) for i, data in enumerate(photos)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``cfd serve`` as a real process on a loopback port."""

    def __init__(self, data_dir: Path, *extra: str):
        self.data_dir = data_dir
        self.extra = extra
        self.command = [CFD]  # what runs ``serve`` (a benchmark may wrap cfd)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 120) -> "Server":
        log = open(self.log, "ab")
        self.process = subprocess.Popen(
            [*self.command, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port), "-q", *self.extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
