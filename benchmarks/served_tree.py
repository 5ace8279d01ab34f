"""A real `cfd serve` on loopback run from a given source tree (this checkout, or a git worktree of
an older commit), so that a benchmark measures both side by side in one run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.helpers import free_port, make_keys  # noqa: E402


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class ServerUnderTest:
    def __init__(self, tree: Path, data_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from detector.cli import main; sys.exit(main())", "serve",
             "--data-dir", str(data_dir), "--port", str(self.port), "-q"],
            cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError(f"server from {tree} not ready")

    def peak_mib(self) -> float:
        return status_kib(self.process.pid, "VmHWM") / 1024

    def rss_mib(self) -> float:
        return status_kib(self.process.pid, "VmRSS") / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@contextmanager
def served(tree: Path) -> Iterator[tuple[ServerUnderTest, dict[str, str]]]:
    """A server from ``tree`` on a fresh data directory with brands acme and zenit and a key per role."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "var"
        keys = make_keys(data_dir)
        server = ServerUnderTest(tree, data_dir)
        try:
            yield server, keys
        finally:
            server.stop()


def trees(baseline: Path | None) -> dict[str, Path]:
    """The source trees to measure: the baseline first, if given, then this checkout."""
    return ({"baseline": baseline.resolve()} if baseline is not None else {}) | {"this checkout": ROOT}
