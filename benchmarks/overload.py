"""How fast overload is refused: 64 clients send a 16-photo check at once to a real `cfd serve` on
loopback, while /healthz is polled. For this checkout and, side by side, a baseline source tree.

    python benchmarks/overload.py [--baseline-tree /tmp/baseline] [--clients 64] [--rounds 2]

Reports the answers by status, the median and p95 latency of the 503s and of the 200s, and the
median and worst /healthz latency during the storm. Bounded: rounds x clients requests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.served_tree import served, trees  # noqa: E402
from benchmarks.report import save_bars  # noqa: E402
from tests.service.helpers import auth, photo_files  # noqa: E402
from tests.synthetic import product_photo  # noqa: E402


def _quantile(values: list[float], q: float) -> float | None:
    return round(sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else None


async def storm(url: str, key: str, clients: int, rounds: int) -> dict:
    photos = photo_files(*(product_photo("acme", 500 + i, size=480, fmt="JPEG") for i in range(16)), content_type="image/jpeg")
    answers: dict[int, list[float]] = {}
    health: list[float] = []
    done = asyncio.Event()

    async def one(client: httpx.AsyncClient) -> None:
        start = time.perf_counter()
        response = await client.post(f"{url}/v1/check", headers=auth(key), files=photos, data={"brand": "acme"})
        answers.setdefault(response.status_code, []).append(time.perf_counter() - start)

    async def poll(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            start = time.perf_counter()
            await client.get(f"{url}/healthz")
            health.append(time.perf_counter() - start)
            await asyncio.sleep(0.1)

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients + 1)) as client:
        poller = asyncio.create_task(poll(client))
        for _ in range(rounds):
            await asyncio.gather(*(one(client) for _ in range(clients)))
        done.set()
        await poller
    return {"answers": {str(k): len(v) for k, v in sorted(answers.items())},
            "p50_503_ms": _quantile(answers.get(503, []), 0.5), "p95_503_ms": _quantile(answers.get(503, []), 0.95),
            "p50_200_ms": _quantile(answers.get(200, []), 0.5), "p95_200_ms": _quantile(answers.get(200, []), 0.95),
            "healthz_p50_ms": _quantile(health, 0.5), "healthz_max_ms": _quantile(health, 1.0),
            "healthz_mean_ms": round(statistics.mean(health) * 1000, 1) if health else None}


def run(tree: Path, clients: int, rounds: int) -> dict:
    with served(tree) as (server, keys):
        httpx.post(f"{server.url}/v1/brands/acme/references", headers=auth(keys["admin"]),
                   files=photo_files(*(product_photo("acme", i) for i in range(4))), timeout=120)
        return asyncio.run(storm(server.url, keys["pipeline"], clients, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    rows = {name: run(tree, args.clients, args.rounds) for name, tree in trees(args.baseline_tree).items()}
    for name, r in rows.items():
        print(f"{name:<14} answers {r['answers']}  503 p50/p95 {r['p50_503_ms']}/{r['p95_503_ms']} ms  "
              f"200 p50/p95 {r['p50_200_ms']}/{r['p95_200_ms']} ms  /healthz p50 {r['healthz_p50_ms']} ms, max {r['healthz_max_ms']} ms")
    save_bars(args.out, "overload", {n: {**r, "p50_503_s": (r["p50_503_ms"] or 0) / 1000} for n, r in rows.items()},
              value="p50_503_s", xlabel=f"median time to a 503 with {args.clients} clients x 16 photos, s")


if __name__ == "__main__":
    main()
