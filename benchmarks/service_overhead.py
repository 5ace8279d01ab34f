"""What a ``/v1/check`` costs besides the model, in one run.

    python benchmarks/service_overhead.py [--seconds 20]

A real ``cfd serve`` (alignment off, micro-batching on) is loaded by 16 clients on keep-alive
loopback sockets (``load_check.py``'s load generator), twice: with the model, and with the model's
forward pass replaced by outputs cached per batch size (every other step of a check unchanged:
HTTP, multipart, decoding, scoring, storing the check, the JSON answer). For each run: requests a
second, latency, and the server's CPU per request (user and system, from /proc), so the second run
is the price of everything but the model. The embedder alone (batch 16, from JPEG bytes) is
measured first in the same run, as in ``load_check.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from load_check import _photos, embedder_throughput, ready_load  # noqa: E402
from tests.service.helpers import Server, make_keys  # noqa: E402
from tests.synthetic import STYLES  # noqa: E402

CLIENTS = 16
CACHED_MODEL_FLAG = "--serve-with-cached-model"


def serve_with_cached_model(argv: list[str]) -> int:
    """``cfd serve`` whose model answers every batch size with the outputs of its first batch of that size."""
    from detector.cli import main
    from detector.embedder import Embedder

    forward = Embedder._forward
    cached: dict[int, object] = {}

    def cached_forward(self, pixels):
        size = int(pixels.shape[0])
        if size not in cached:
            cached[size] = forward(self, pixels)
        return cached[size]

    Embedder._forward = cached_forward
    return main(argv)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _batch_sizes(url: str) -> float:
    metrics = dict(line.rsplit(" ", 1) for line in httpx.get(f"{url}/metrics").text.splitlines()
                   if line.startswith("cfd_model_batch_size_"))
    return float(metrics["cfd_model_batch_size_sum"]) / max(1.0, float(metrics["cfd_model_batch_size_count"]))


def measure(data_dir: Path, keys: dict, photos: list[bytes], *, cached_model: bool, seconds: float) -> dict:
    server = Server(data_dir, "--no-alignment")
    if cached_model:
        server.command = [sys.executable, __file__, CACHED_MODEL_FLAG]
    server.start()
    try:
        load = ready_load(server, keys, photos)
        before_batches = _batch_sizes(server.url)
        user0, system0 = _cpu_seconds(server.process.pid)
        started = time.perf_counter()
        result = asyncio.run(load.closed_loop(CLIENTS, 1_000_000, seconds))
        elapsed = time.perf_counter() - started
        user1, system1 = _cpu_seconds(server.process.pid)
        n = result["requests"]
        return {**result, "server_user_ms_per_request": round((user1 - user0) / n * 1000, 2),
                "server_system_ms_per_request": round((system1 - system0) / n * 1000, 2),
                "server_cores_busy": round((user1 - user0 + system1 - system0) / elapsed, 2),
                "mean_model_batch": round(_batch_sizes(server.url), 2), "mean_model_batch_warm_up": round(before_batches, 2)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    photos = _photos()
    embedder = embedder_throughput(photos)
    print(f"embedder alone: {embedder['from_jpeg_images_per_s']} images/s from JPEG bytes", flush=True)
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, cached in (("with the model", False), ("model replaced by cached outputs", True)):
            data_dir = Path(folder) / name.replace(" ", "-")
            runs[name] = measure(data_dir, make_keys(data_dir, brands=tuple(STYLES)), photos, cached_model=cached,
                                 seconds=args.seconds)
            r = runs[name]
            print(f"{name:<34} {r['throughput_rps']:>7} requests/s, p99 {r['p99_ms']} ms, server CPU "
                  f"{r['server_user_ms_per_request']} user + {r['server_system_ms_per_request']} system ms a request "
                  f"({r['server_cores_busy']} cores busy)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "service_overhead.json").write_text(json.dumps({"clients": CLIENTS, "embedder": embedder, "runs": runs}, indent=2) + "\n")
    _plot(embedder, runs, args.out / "service_overhead.png")


def _plot(embedder: dict, runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(runs)
    axes[0].bar(names, [runs[n]["throughput_rps"] for n in names], color=["tab:blue", "tab:grey"])
    axes[0].axhline(embedder["from_jpeg_images_per_s"], color="black", ls="--", label="embedder alone, from JPEG bytes")
    axes[0].axhline(0.8 * embedder["from_jpeg_images_per_s"], color="black", ls=":", label="80% of it")
    axes[0].set_ylabel(f"requests/s at {CLIENTS} clients")
    axes[0].legend(fontsize=8)
    user = [runs[n]["server_user_ms_per_request"] for n in names]
    system = [runs[n]["server_system_ms_per_request"] for n in names]
    axes[1].bar(names, user, label="user")
    axes[1].bar(names, system, bottom=user, label="system")
    axes[1].axhline(2000 / embedder["from_jpeg_images_per_s"], color="black", ls="--",
                    label="embedder alone: core-ms an image (2 cores)")
    axes[1].set_ylabel("server CPU, core-ms a request")
    axes[1].legend(fontsize=8)
    axes[0].set_ylim(0, 1.35 * max(embedder["from_jpeg_images_per_s"], *(runs[n]["throughput_rps"] for n in names)))
    axes[1].set_ylim(0, 1.35 * max(u + s for u, s in zip(user, system)))
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("/v1/check without alignment: the model against everything else")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    if sys.argv[1:2] == [CACHED_MODEL_FLAG]:
        sys.exit(serve_with_cached_model(sys.argv[2:]))
    main()
