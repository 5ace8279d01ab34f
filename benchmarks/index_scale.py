"""The gallery index at 10k, 100k and 1M references: build, restart, memory, per-photo search, recall
of the approximate other-brand match, add and delete, and today's exact index beside it.

    python benchmarks/index_scale.py [--sizes 10000 100000 1000000] [--queries 1000] [--workdir DIR]

Each gallery is a real data directory (SQLite rows with float32 embeddings of the default model's
dimension) holding synthetic clustered vectors: brands of log-normal sizes (about 200 references a
brand on average, at most 20,000), products of about 20 photos inside a brand, photo noise on an
anisotropic spectrum. Queries are new photos of a gallery product; the brand they claim is theirs,
drawn in proportion to brand size (big brands get more listings), which is the hard case for the
other-brand match: nothing of another brand is close.

Build and restart run in fresh processes (``Gallery.open``: vectors from SQLite in bulk, then the
other-brand index trained and saved, or reused). Per-photo search is what a check runs for one
photo: the claimed brand's exact top-k plus the best other-brand match, single query. Recall@1 is
the share of queries whose other-brand match is the exact one (same similarity). The baseline is
the previous design (one exact ``IndexFlatIP`` with an id filter per brand) at the sizes given in
``--baseline-sizes``. Results: ``benchmarks/results/index_scale.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import percentile  # noqa: E402

DIM = 1280
MAX_BRAND = 20_000
SPLIT = 5_000  # search times are also reported for queries claiming brands up to and over this size


class SyntheticGallery:
    """Clustered unit vectors, reproducible from (count, seed) without holding them all."""

    def __init__(self, count: int, *, dim: int = DIM, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.count, self.dim, self.seed = count, dim, seed
        self.brand_sizes = _brand_sizes(count, rng)
        self.spectrum = ((1 + np.arange(dim)) ** -0.5).astype(np.float32)
        centers = rng.standard_normal((len(self.brand_sizes), dim), dtype=np.float32) * self.spectrum
        products = [max(1, int(s) // 20) for s in self.brand_sizes]
        self.product_brand = np.repeat(np.arange(len(products)), products)
        self.products = centers[self.product_brand] + 0.7 * rng.standard_normal(
            (len(self.product_brand), dim), dtype=np.float32) * self.spectrum
        first = np.concatenate([[0], np.cumsum(products)[:-1]])
        self.ref_brand = np.repeat(np.arange(len(self.brand_sizes)), self.brand_sizes)
        self.ref_product = first[self.ref_brand] + rng.integers(0, np.asarray(products)[self.ref_brand])

    def brand(self, code: int) -> str:
        return f"brand-{code:05d}"

    def _photos(self, products: np.ndarray, rng) -> np.ndarray:
        photos = self.products[products] + 0.45 * rng.standard_normal((len(products), self.dim), dtype=np.float32) * self.spectrum
        return photos / np.linalg.norm(photos, axis=1, keepdims=True)

    def chunks(self, size: int = 20_000):
        """(first row, vectors) of the gallery, in row order."""
        rng = np.random.default_rng(self.seed + 1)
        for start in range(0, self.count, size):
            yield start, self._photos(self.ref_product[start : start + size], rng)

    def queries(self, count: int, seed: int = 7) -> tuple[np.ndarray, list[str]]:
        """New photos of gallery products, claiming their own brand (drawn in proportion to its size)."""
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, self.count, count)
        return self._photos(self.ref_product[rows], rng), [self.brand(b) for b in self.ref_brand[rows]]


def _brand_sizes(count: int, rng) -> np.ndarray:
    weights = rng.lognormal(0, 1.7, max(1, count // 200))
    sizes = np.clip(np.round(weights / weights.sum() * count), 1, MAX_BRAND).astype(np.int64)
    while sizes.sum() != count:  # rounding and the cap leave a few to place or take back
        i = rng.integers(len(sizes))
        if sizes.sum() < count and sizes[i] < MAX_BRAND:
            sizes[i] += 1
        elif sizes.sum() > count and sizes[i] > 1:
            sizes[i] -= 1
    return sizes


# --- the data directory ---


def populate(data_dir: Path, synthetic: SyntheticGallery, model: str) -> float:
    """Write the synthetic gallery as reference rows; returns seconds taken."""
    from detector.store import Store, bump_counter
    from detector.timestamps import utc_now

    started = time.perf_counter()
    store = Store(data_dir / "db.sqlite3")
    with store.transaction() as conn:
        conn.executemany("INSERT INTO brands(slug, display_name, created_at) VALUES (?, ?, ?)",
                         [(synthetic.brand(b), synthetic.brand(b), utc_now()) for b in range(len(synthetic.brand_sizes))])
    for start, vectors in synthetic.chunks():
        with store.transaction() as conn:
            conn.executemany(
                "INSERT INTO refs(id, brand, sha256, width, height, created_at, model, embedding) VALUES (?, ?, ?, 1, 1, ?, ?, ?)",
                [(start + i + 1, synthetic.brand(synthetic.ref_brand[start + i]), f"{start + i:064x}", utc_now(), model,
                  vector.tobytes()) for i, vector in enumerate(vectors)])
        print(f"  wrote {start + len(vectors):,} rows", flush=True)
    with store.transaction() as conn:
        bump_counter(conn, "gallery_version")
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return time.perf_counter() - started


def _rss_mib() -> tuple[float, float]:
    status = Path("/proc/self/status").read_text()
    field = {line.split(":")[0]: float(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("Vm")}
    return field["VmRSS"], field["VmHWM"]


def _open(data_dir: Path):
    from detector.gallery import Gallery
    from detector.model_folder import load_model

    model = load_model()
    started = time.perf_counter()
    gallery = Gallery(data_dir, embedder=model.embedder(), model_fingerprint=model.fingerprint).open()
    return gallery, time.perf_counter() - started, model


def measure(data_dir: Path, count: int, queries: int, baseline: bool) -> dict:
    """In a fresh process: open the gallery (restart), then search, recall, add and delete."""
    from detector.scoring import NEAREST_PER_PHOTO, PATCH_REFERENCES

    gallery, opened_s, model = _open(data_dir)
    rss, peak = _rss_mib()
    index = gallery.index
    top_k = max(model.calibration.top_k, NEAREST_PER_PHOTO, PATCH_REFERENCES, gallery.alignment.candidates)
    synthetic = SyntheticGallery(count)
    photos, brands = synthetic.queries(queries)
    memory = index.memory()
    row = {"references": count, "brands": len(synthetic.brand_sizes), "largest_brand": int(synthetic.brand_sizes.max()),
           "approximate": index.approximate, "other_brand_index": index.recipe.factory(count), "restart_s": opened_s,
           "rss_mib": rss, "peak_rss_mib": peak, "top_k": top_k,
           "exact_bytes_per_reference": memory["exact_bytes"] / count,
           "other_brand_index_bytes_per_reference": memory["other_brand_index_bytes"] / count}
    own_ms, other_ms, total_ms, found = [], [], [], []
    for photo, brand in zip(photos, brands):
        query = photo[None]
        t0 = time.perf_counter()
        index.search_brand(query, brand, top_k)
        t1 = time.perf_counter()
        other = index.search_other_brands(query, brand, 1)[0]
        t2 = time.perf_counter()
        own_ms.append((t1 - t0) * 1e3)
        other_ms.append((t2 - t1) * 1e3)
        total_ms.append((t2 - t0) * 1e3)
        found.append(float(other.similarities[0]))
    row.update(**_percentiles("search_ms", total_ms), **_percentiles("claimed_brand_ms", own_ms),
               **_percentiles("other_brands_ms", other_ms))
    sizes = np.array([index.brand_size(b) for b in brands])
    for name, chosen in ((f"search_ms_brands_upto_{SPLIT:_}", sizes <= SPLIT), (f"search_ms_brands_over_{SPLIT:_}", sizes > SPLIT)):
        if chosen.any():
            row.update(**_percentiles(name, np.asarray(total_ms)[chosen].tolist()), **{f"{name}_queries": int(chosen.sum())})
    exact = _exact_other_best(index.vectors, photos, brands)
    row["recall_at_1"] = float(np.mean(np.abs(np.asarray(found) - exact) < 1e-5))
    row.update(_add_delete(index, synthetic))
    if baseline:
        row.update(_baseline(index.vectors, photos, brands, top_k))
    return row


def _percentiles(name: str, values: list[float]) -> dict:
    return {f"{name}_p50": percentile(values, 50), f"{name}_p99": percentile(values, 99)}


def _exact_other_best(vectors, photos: np.ndarray, brands: list[str]) -> np.ndarray:
    """The exact best similarity among other brands, brand by brand (no second copy of the gallery)."""
    best = np.full(len(photos), -np.inf, np.float32)
    claimed = np.asarray(brands)
    for brand in vectors.brand_sizes():
        ids = vectors.brand_ids(brand)
        sims = (photos @ vectors.vectors_of(ids).T).max(axis=1)
        sims[claimed == brand] = -np.inf
        best = np.maximum(best, sims)
    return best


def _add_delete(index, synthetic: SyntheticGallery, operations: int = 50) -> dict:
    """Adding one reference, then deleting one, timed each (ids past the gallery's; then its own)."""
    photos, brands = synthetic.queries(operations, seed=11)
    added, deleted = [], []
    for i, (photo, brand) in enumerate(zip(photos, brands)):
        t0 = time.perf_counter()
        index.add(np.array([synthetic.count + 1 + i]), [brand], photo[None])
        added.append((time.perf_counter() - t0) * 1e3)
    for ref_id in np.random.default_rng(3).choice(np.arange(1, synthetic.count + 1), operations, replace=False):
        t0 = time.perf_counter()
        index.remove([int(ref_id)])
        deleted.append((time.perf_counter() - t0) * 1e3)
    return {**_percentiles("add_ms", added), **_percentiles("delete_ms", deleted)}


def _baseline(vectors, photos: np.ndarray, brands: list[str], top_k: int, queries: int = 100) -> dict:
    """The previous design: one IndexFlatIP over everything, filtered by id per brand."""
    import faiss

    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.dim))
    ids = vectors.all_ids()
    flat.add_with_ids(vectors.vectors_of(ids), ids)
    selectors = {}
    timings = []
    for photo, brand in list(zip(photos, brands))[:queries]:
        query = photo[None]
        t0 = time.perf_counter()
        if brand not in selectors:
            batch = faiss.IDSelectorBatch(vectors.brand_ids(brand))
            selectors[brand] = (batch, faiss.IDSelectorNot(batch))
        batch, others = selectors[brand]
        flat.search(query, top_k, params=faiss.SearchParameters(sel=batch))
        flat.search(query, 1, params=faiss.SearchParameters(sel=others))
        timings.append((time.perf_counter() - t0) * 1e3)
    return _percentiles("baseline_search_ms", timings)


def build(data_dir: Path) -> dict:
    """In a fresh process: open the gallery with no saved index (vectors loaded, index built and saved)."""
    for leftover in data_dir.glob("index.faiss*"):
        leftover.unlink()
    gallery, opened_s, _ = _open(data_dir)
    rss, peak = _rss_mib()
    return {"build_s": opened_s, "build_rss_mib": rss, "build_peak_rss_mib": peak}


def _in_subprocess(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed with exit status {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["references"] for r in rows]
    fig, (search, other) = plt.subplots(1, 2, figsize=(10, 3.6))
    search.plot(sizes, [r["search_ms_p50"] for r in rows], "o-", label="per-photo search p50")
    search.plot(sizes, [r["search_ms_p99"] for r in rows], "o-", label="per-photo search p99")
    base = [r for r in rows if "baseline_search_ms_p50" in r]
    if base:
        search.plot([r["references"] for r in base], [r["baseline_search_ms_p50"] for r in base], "s--", label="previous design p50")
    search.axhline(5, color="grey", lw=0.8, ls=":", label="goal: p99 5 ms")
    search.set(xscale="log", yscale="log", xlabel="references", ylabel="ms", title="search a check runs per photo")
    search.legend(fontsize=7)
    other.plot(sizes, [r["restart_s"] for r in rows], "o-", label="restart (s)")
    other.plot(sizes, [r["build_s"] for r in rows], "o-", label="build (s)")
    other.plot(sizes, [r["rss_mib"] / 1024 for r in rows], "o-", label="RSS after restart (GiB)")
    other.set(xscale="log", xlabel="references", title="build, restart, memory")
    other.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None, help="where the galleries are written (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--step", choices=["build", "measure"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "build":
        print(json.dumps(build(args.data_dir)))
        return
    if args.step == "measure":
        print(json.dumps(measure(args.data_dir, args.sizes[0], args.queries, args.baseline)))
        return

    from detector.model_folder import load_model

    model = load_model().fingerprint
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="index-scale-"))
    rows = []
    try:
        for count in args.sizes:
            data_dir = workdir / str(count)
            shutil.rmtree(data_dir, ignore_errors=True)
            print(f"{count:,} references: writing the gallery", flush=True)
            populate(data_dir, SyntheticGallery(count), model)
            row = _in_subprocess("--step", "build", "--data-dir", str(data_dir))
            extra = ["--baseline"] if count in args.baseline_sizes else []
            row.update(_in_subprocess("--step", "measure", "--data-dir", str(data_dir), "--sizes", str(count),
                                      "--queries", str(args.queries), *extra))
            rows.append(row)
            print(json.dumps(row, indent=1), flush=True)
            shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "index_scale.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, args.out / "index_scale.png")
    print(f"wrote {args.out / 'index_scale.json'} and .png")


if __name__ == "__main__":
    main()
