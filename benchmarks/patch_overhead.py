"""What patch evidence costs per check: the zero-shot model (global embedding only) against a
model with a patch head, on the same gallery and photos, in one run.

    python benchmarks/patch_overhead.py --model models/finetuned-lite0-small [--checks 48]

Each check is one photo through ``Detector.check`` (decode, embed, FAISS search, and for the
patch model reading three references' patch records from SQLite and matching them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import save_bars  # noqa: E402
from detector.gallery import Gallery, UploadFile  # noqa: E402
from detector.model_folder import load_model  # noqa: E402
from detector.pipeline import Detector  # noqa: E402
from tests.synthetic import STYLES, product_photo  # noqa: E402


def _latencies(model, workdir: Path, photos: list[bytes], references_per_brand: int) -> tuple[list[float], int]:
    gallery = Gallery(workdir, embedder=model.embedder(), model_fingerprint=model.fingerprint).open()
    for brand in STYLES:
        gallery.create_brand(brand)
        gallery.add_references(brand, [UploadFile(f"{brand}{i}.png", product_photo(brand, i, size=320))
                                       for i in range(references_per_brand)])
    detector = Detector(model, gallery)
    brands = list(STYLES)
    detector.check([UploadFile("warm-up", photos[0])], brand=brands[0])
    times = []
    for i, photo in enumerate(photos):
        start = time.perf_counter()
        detector.check([UploadFile(f"p{i}", photo)], brand=brands[i % len(brands)])
        times.append((time.perf_counter() - start) * 1000)
    size = len(gallery.index)
    gallery.close()
    return times, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="a model folder with a patch head")
    parser.add_argument("--checks", type=int, default=48)
    parser.add_argument("--references", type=int, default=8, help="references per brand")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    models = {"zero-shot (baseline)": load_model(), "patch head": load_model(args.model)}
    if models["patch head"].config.patch_dim is None:
        parser.error(f"{args.model} has no patch head")
    brands = list(STYLES)
    photos = [product_photo(brands[i % len(brands)], 1000 + i, size=320) for i in range(args.checks)]
    rows = {}
    for name, model in models.items():
        with tempfile.TemporaryDirectory() as tmp:
            times, size = _latencies(model, Path(tmp), photos, args.references)
        rows[name] = {"model": model.name, "gallery_references": size, "checks": len(times),
                      "p50_ms": round(statistics.median(times), 1),
                      "p95_ms": round(sorted(times)[int(0.95 * (len(times) - 1))], 1)}
    base = rows["zero-shot (baseline)"]["p50_ms"]
    for row in rows.values():
        row["p50_ratio_vs_baseline"] = round(row["p50_ms"] / base, 2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, one photo per check")
    print(f"{'model':<24}{'p50 ms':>9}{'p95 ms':>9}{'ratio':>8}")
    for name, r in rows.items():
        print(f"{name:<24}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p50_ratio_vs_baseline']:>8}")
    save_bars(args.out, "patch_overhead", rows, value="p50_ms", xlabel="median ms per one-photo check (CPU)", height=2.4)

if __name__ == "__main__":
    main()
