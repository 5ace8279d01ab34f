"""Load generator for ``/v1/check`` on loopback: 1, 4, 16 concurrent clients, micro-batching on
and off, in one run. Every loop is bounded in request count and time.

    python benchmarks/load_check.py [--requests 64] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.helpers import Server, auth, make_keys  # noqa: E402
from tests.synthetic import STYLES, product_photo  # noqa: E402

CONCURRENCY = (1, 4, 16)


async def _run_clients(url: str, key: str, clients: int, requests: int, seconds: float) -> dict:
    photos = [product_photo(brand, 9000 + i, size=256, fmt="JPEG") for i in range(8) for brand in STYLES]
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            response = await client.post(f"{url}/v1/check", headers=auth(key),
                                         files=[("files", ("p.jpg", photos[i % len(photos)], "image/jpeg"))],
                                         data={"brand": "acme"})
            latencies.append(time.perf_counter() - start)
            errors += response.status_code != 200

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        begin = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        elapsed = time.perf_counter() - begin
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    return {"clients": clients, "requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "throughput_rps": round(len(latencies) / elapsed, 2), "p50_ms": round(pick(0.5), 1),
            "p95_ms": round(pick(0.95), 1), "p99_ms": round(pick(0.99), 1), "mean_ms": round(statistics.mean(latencies) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--seconds", type=float, default=60, help="time bound per concurrency level")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "var"
        keys = make_keys(data_dir, brands=tuple(STYLES))
        for mode, flags in (("micro-batching", ["--max-wait-ms", "5"]), ("no batching", ["--no-micro-batching"])):
            server = Server(data_dir, *flags).start()
            try:
                with httpx.Client(timeout=120) as client:
                    for brand in STYLES:
                        client.post(f"{server.url}/v1/brands/{brand}/references", headers=auth(keys["admin"]),
                                    files=[("files", (f"{s}.png", product_photo(brand, s), "image/png")) for s in range(4)])
                asyncio.run(_run_clients(server.url, keys["pipeline"], 2, 8, 30))  # warm-up
                results[mode] = [asyncio.run(_run_clients(server.url, keys["pipeline"], c, args.requests, args.seconds))
                                 for c in CONCURRENCY]
            finally:
                server.stop()
    print(f"{'mode':<16}{'clients':>8}{'req':>6}{'err':>5}{'rps':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for mode, rows in results.items():
        for r in rows:
            print(f"{mode:<16}{r['clients']:>8}{r['requests']:>6}{r['errors']:>5}{r['throughput_rps']:>9}"
                  f"{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}")
    ratios = {str(c): round(b["throughput_rps"] / n["throughput_rps"], 2)
              for c, b, n in zip(CONCURRENCY, results["micro-batching"], results["no batching"])}
    print("throughput ratio micro-batching / no batching, by clients:", ratios)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load_check.json").write_text(json.dumps({"results": results, "throughput_ratio": ratios}, indent=2) + "\n")
    _plot(results, args.out / "load_check.png")


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode, rows in results.items():
        clients = [r["clients"] for r in rows]
        axes[0].plot(clients, [r["throughput_rps"] for r in rows], marker="o", label=mode)
        axes[1].plot(clients, [r["p95_ms"] for r in rows], marker="o", label=mode)
    for ax, label in zip(axes, ("throughput (requests/s)", "p95 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle("/v1/check on loopback, 1 photo per request")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
