"""Server memory under decoded-pixel attacks: peak and settled RSS of a real `cfd serve` on loopback,
for this checkout and, side by side in the same run, for a baseline source tree (another commit).

    git worktree add /tmp/baseline <commit>
    python benchmarks/memory_under_attack.py --baseline-tree /tmp/baseline [--megapixels 39.7]

Attacks (each bounded in requests and time; every image is a small PNG that decodes to ~40 MP):
  upload   one reference upload of 64 such images (admin key)
  batch    one /v1/check/batch of 64 listings with one such image each (pipeline key)
  checks   two concurrent 16-photo checks of such images (pipeline key)
Peak RSS is the kernel's high-water mark of the server process (VmHWM) after each attack; settled RSS
is its resident size 3 s after the last attack.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import save_bars  # noqa: E402
from benchmarks.served_tree import served, trees  # noqa: E402
from tests.service.helpers import auth, photo_files  # noqa: E402
from tests.synthetic import product_photo  # noqa: E402


def bomb(megapixels: float, seed: int) -> bytes:
    """A PNG of one flat colour: a few hundred kB on the wire, ``megapixels`` once decoded."""
    side = int((megapixels * 1e6) ** 0.5)
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (seed % 256, 80, 160)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def attack(tree: Path, megapixels: float, timeout: float) -> dict:
    with served(tree) as (server, keys):
        admin, pipeline = auth(keys["admin"]), auth(keys["pipeline"])
        seed_refs = photo_files(*(product_photo("acme", i) for i in range(3)))
        httpx.post(f"{server.url}/v1/brands/acme/references", headers=admin, files=seed_refs, timeout=timeout)
        figures = {"idle_mib": round(server.rss_mib(), 1)}
        bombs = [bomb(megapixels, i) for i in range(64)]
        statuses = {}

        started = time.perf_counter()
        r = httpx.post(f"{server.url}/v1/brands/acme/references", headers=admin, files=photo_files(*bombs), timeout=timeout)
        statuses["upload"] = r.status_code
        figures["upload_peak_mib"] = round(server.peak_mib(), 1)

        listings = [{"listing_id": f"L{i}", "brand": "acme", "images": [{"base64": base64.b64encode(b).decode()}]}
                    for i, b in enumerate(bombs)]
        r = httpx.post(f"{server.url}/v1/check/batch", headers=pipeline, json={"listings": listings}, timeout=timeout)
        statuses["batch"] = r.status_code
        statuses["batch_listing_errors"] = sorted({x["error"]["code"] for x in r.json().get("results", []) if "error" in x}) \
            if r.status_code == 200 else None
        figures["batch_peak_mib"] = round(server.peak_mib(), 1)

        answers = []

        def one_check() -> None:
            response = httpx.post(f"{server.url}/v1/check", headers=pipeline, files=photo_files(*bombs[:16]),
                                  data={"brand": "acme"}, timeout=timeout)
            answers.append(response.status_code)

        threads = [threading.Thread(target=one_check) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses["checks"] = answers
        figures["checks_peak_mib"] = round(server.peak_mib(), 1)
        time.sleep(3)
        figures["settled_mib"] = round(server.rss_mib(), 1)
        figures["seconds"] = round(time.perf_counter() - started, 1)
        alive = httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        return {**figures, "statuses": statuses, "healthy_after": alive, "bomb_bytes": len(bombs[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-tree", type=Path, default=None, help="source tree of the baseline (e.g. a git worktree)")
    parser.add_argument("--megapixels", type=float, default=39.7)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per request")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    rows = {}
    for name, tree in trees(args.baseline_tree).items():
        rows[name] = attack(tree, args.megapixels, args.timeout)
        print(name, rows[name], flush=True)
    print(f"{'server':<16}{'idle':>8}{'upload':>9}{'batch':>9}{'checks':>9}{'settled':>9}   (MiB; peak after each attack)")
    for name, r in rows.items():
        print(f"{name:<16}{r['idle_mib']:>8}{r['upload_peak_mib']:>9}{r['batch_peak_mib']:>9}{r['checks_peak_mib']:>9}"
              f"{r['settled_mib']:>9}   {r['statuses']}")
    save_bars(args.out, "memory_under_attack", rows, value="checks_peak_mib",
              xlabel="peak server RSS over all three attacks, MiB")


if __name__ == "__main__":
    main()
