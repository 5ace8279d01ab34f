"""Scale-out figures, in one run: batch scoring through Ray against a plain single-process loop,
and how fast one service replica sees another's changes.

    python benchmarks/batch_scoring.py [--listings 240]

1. The same listings are scored three times by ``cfd batch score`` on a fresh copy of one gallery:
   ``--no-ray`` (the plain loop), then Ray with one actor and with two. Each run is a real
   command in a network namespace whose only interface is loopback (Ray's servers listen on
   every interface they see). Throughput is listings per second, end to end (start-up included)
   and inside the scoring loop; the overhead ratio is Ray's against the plain loop's.
2. Two ``cfd serve`` replicas on a throwaway PostgreSQL server and one data directory: after
   replica A acknowledges an upload (or a delete), how long until replica B's next check uses it,
   and, with no check arriving, until B's index follows it by itself (``--follow-interval``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.loopback_only import in_loopback_namespace  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402
from tests.service.helpers import Server, auth, make_keys  # noqa: E402
from tests.synthetic import STYLES, product_photo  # noqa: E402

CFD = str(Path(sys.executable).parent / "cfd")
RUNS = {"plain loop (--no-ray)": ["--no-ray"], "Ray, 1 actor": ["--actors", "1"], "Ray, 2 actors": ["--actors", "2"]}
PROBES = 20


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}


def _gallery(root: Path) -> Path:
    data_dir = root / "var"
    make_keys(data_dir, brands=tuple(STYLES))
    for brand in STYLES:
        subprocess.run([CFD, "references", "add", brand, *_reference_files(root, brand), "--data-dir", str(data_dir), "-q"],
                       check=True, capture_output=True)
    return data_dir


def _reference_files(root: Path, brand: str) -> list[str]:
    folder = root / "references"
    folder.mkdir(exist_ok=True)
    paths = []
    for seed in range(4):
        path = folder / f"{brand}-{seed}.png"
        path.write_bytes(product_photo(brand, seed))
        paths.append(str(path))
    return paths


def _listings(root: Path, count: int) -> Path:
    photos = root / "photos"
    photos.mkdir()
    brands = list(STYLES)
    path = root / "listings.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["listing_id", "brand", "photos"])
        for i in range(count):
            brand = brands[i % len(brands)]
            photo = photos / f"{i}.png"
            photo.write_bytes(product_photo(brand, 1000 + i))
            writer.writerow([f"L{i}", brand, str(photo)])
    return path


def batch_runs(root: Path, listings: Path) -> dict:
    data_dir = _gallery(root)
    results = {}
    for name, flags in RUNS.items():
        copy = root / f"var-{len(results)}"
        shutil.copytree(data_dir, copy)  # each run stores its checks in a gallery of its own
        output = root / f"results-{len(results)}.parquet"
        command = [CFD, "batch", "score", "--input", str(listings), "--output", str(output), "--data-dir", str(copy), "-q",
                   *flags]
        started = time.perf_counter()
        done = subprocess.run(in_loopback_namespace(command, root / f"sockets-{len(results)}.json"), capture_output=True,
                              text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
        report = json.loads(done.stdout)
        results[name] = {"listings": report["listings"], "errors": report["errors"], "wall_s": round(wall, 2),
                         "end_to_end_listings_per_s": round(report["listings"] / wall, 2),
                         "scoring_loop_s": report["seconds"], "scoring_loop_listings_per_s": report["listings_per_second"],
                         "first_batch_after_s": report["first_batch_after_s"],
                         "steady_listings_per_s": report["listings_per_second_after_first_batch"],
                         "sockets": json.loads((root / f"sockets-{len(results)}.json").read_text())["sockets"]}
        print(f"{name:<24} {results[name]['end_to_end_listings_per_s']:>7} listings/s end to end, "
              f"{results[name]['scoring_loop_listings_per_s']} in the scoring loop, "
              f"{results[name]['steady_listings_per_s']} after its first batch ({results[name]['first_batch_after_s']} s)", flush=True)
    plain = results["plain loop (--no-ray)"]
    for name, r in results.items():
        r["ratio_end_to_end_vs_plain"] = round(r["end_to_end_listings_per_s"] / plain["end_to_end_listings_per_s"], 3)
        r["ratio_scoring_loop_vs_plain"] = round(r["scoring_loop_listings_per_s"] / plain["scoring_loop_listings_per_s"], 3)
        r["ratio_steady_vs_plain"] = round(r["steady_listings_per_s"] / plain["steady_listings_per_s"], 3)
    return results


def _until_b_holds(client: httpx.Client, replica: Server, references: int, timeout: float = 30.0) -> float:
    """When ``replica``'s index first held ``references`` (polled every 2 ms, at most ``timeout`` s)."""
    deadline = time.perf_counter() + timeout
    while client.get(f"{replica.url}/readyz").json()["references"] != references:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"replica {replica.url} did not reach {references} references in {timeout} s")
        time.sleep(0.002)
    return time.perf_counter()


def propagation(root: Path) -> dict:
    server = PostgresServer().start()
    replicas: list[Server] = []
    try:
        url = server.new_database()
        data_dir = root / "replicated"
        keys = make_keys(data_dir, database=url)
        replicas = [Server(data_dir, "--database", url, "--no-alignment").start() for _ in range(2)]
        a, b = replicas
        next_check, follow_add, follow_delete, seen_first = [], [], [], 0  # the gallery holds no reference between probes
        with httpx.Client(timeout=60) as client:
            for probe in range(PROBES):
                photo = product_photo("acme", 5000 + probe)
                files = [("files", ("p.png", photo, "image/png"))]
                answer = client.post(f"{a.url}/v1/brands/acme/references", headers=auth(keys["admin"]), files=files)
                acknowledged = time.perf_counter()
                ref_id = answer.json()["references"][0]["id"]
                if probe % 2 == 0:  # B's next check
                    result = client.post(f"{b.url}/v1/check", headers=auth(keys["pipeline"]), data={"brand": "acme"}, files=files)
                    next_check.append(time.perf_counter() - acknowledged)
                    seen_first += result.json()["images"][0]["nearest_references"][0]["id"] == ref_id
                else:  # no check: B's index follows by itself
                    follow_add.append(_until_b_holds(client, b, 1) - acknowledged)
                client.delete(f"{a.url}/v1/brands/acme/references/{ref_id}", headers=auth(keys["admin"]))
                deleted = time.perf_counter()
                follow_delete.append(_until_b_holds(client, b, 0) - deleted)
        return {"probes": PROBES, "idle_replicas_follow": "PostgreSQL LISTEN/NOTIFY",
                "next_check_after_upload": {**_percentiles(next_check), "saw_the_new_reference": f"{seen_first}/{len(next_check)}"},
                "idle_follow_after_upload": _percentiles(follow_add), "idle_follow_after_delete": _percentiles(follow_delete)}
    finally:
        for replica in replicas:
            replica.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listings", type=int, default=240)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        batch = batch_runs(root, _listings(root, args.listings))
        replicas = propagation(root)
    print(json.dumps(replicas, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch_scoring.json").write_text(json.dumps({"batch_scoring": batch, "replicas": replicas}, indent=2) + "\n")
    _plot(batch, replicas, args.out / "batch_scoring.png")


def _plot(batch: dict, replicas: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(batch)
    x = range(len(names))
    for offset, (key, label) in enumerate((("end_to_end_listings_per_s", "end to end"), ("scoring_loop_listings_per_s", "scoring loop"),
                                           ("steady_listings_per_s", "after the first batch"))):
        axes[0].bar([i + (offset - 1) * 0.27 for i in x], [batch[n][key] for n in names], width=0.27, label=label)
    axes[0].set_xticks(list(x), names, fontsize=8)
    axes[0].set_ylabel("listings per second")
    axes[0].legend(fontsize=8)
    axes[0].set_title("cfd batch score, 1 photo per listing, alignment on")
    kinds = ["next_check_after_upload", "idle_follow_after_upload", "idle_follow_after_delete"]
    for offset, key in enumerate(("p50_ms", "p95_ms", "max_ms")):
        axes[1].bar([i + (offset - 1) * 0.27 for i in range(len(kinds))], [replicas[k][key] for k in kinds], width=0.27, label=key)
    axes[1].set_xticks(range(len(kinds)), ["B's next check\nafter A's upload", "B idle, follows\nA's upload",
                                             "B idle, follows\nA's delete"], fontsize=8)
    axes[1].set_ylabel("ms after A's acknowledgement")
    axes[1].legend(fontsize=8)
    axes[1].set_title("two replicas on PostgreSQL")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
