"""Embedder throughput: the naive baseline (fp32, batch 1, NCHW) against batched fp32 and
bf16 autocast with channels_last, fp32 also with its BatchNorms folded into the convolutions
(the fp32 default), in one run; plus how far each moves the embeddings.

    python benchmarks/embedding_speed.py [--images 96]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import save_bars  # noqa: E402
from detector.embedder import Embedder  # noqa: E402
from detector.model_folder import load_model  # noqa: E402
from tests.synthetic import STYLES, product_image  # noqa: E402


def _throughput(embedder, batch: torch.Tensor, repeats: int = 2) -> tuple[float, np.ndarray]:
    embedder.embed_tensor(batch[: embedder.batch_size])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        embeddings = embedder.embed_tensor(batch).vectors
        best = min(best, time.perf_counter() - start)
    return len(batch) / best, embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    model = load_model()
    images = [product_image(brand, i, size=320) for i in range(args.images // len(STYLES) + 1) for brand in STYLES][: args.images]
    batch = model.embedder().preprocess(images)
    plain = dict(fold_norms=False)
    configs = {"fp32 batch 1 (baseline)": dict(batch_size=1, precision="fp32", channels_last=False, **plain),
               "fp32 NCHW batch 16": dict(batch_size=16, precision="fp32", channels_last=False, **plain),
               "fp32 channels_last batch 16": dict(batch_size=16, precision="fp32", channels_last=True, **plain),
               "fp32 channels_last batch 16 folded": dict(batch_size=16, precision="fp32", channels_last=True),
               "bf16 channels_last batch 16": dict(batch_size=16, precision="bf16", channels_last=True)}
    rows, embeddings = {}, {}
    for name, kwargs in configs.items():
        embedder = Embedder(model.net, model.config.transform(), **kwargs)
        rate, emb = _throughput(embedder, batch)
        rows[name] = {"images_per_s": round(rate, 1)}
        embeddings[name] = emb
    base = rows["fp32 batch 1 (baseline)"]["images_per_s"]
    reference = embeddings["fp32 batch 1 (baseline)"]
    for name in rows:
        rows[name]["ratio_vs_baseline"] = round(rows[name]["images_per_s"] / base, 2)
        cosine = np.sum(embeddings[name] * reference, axis=1)
        rows[name]["min_cosine_vs_fp32"] = round(float(cosine.min()), 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(images)} images of {model.config.input.input_size}px")
    print(f"{'configuration':<36}{'img/s':>8}{'ratio':>8}{'min cos vs fp32':>17}")
    for name, r in rows.items():
        print(f"{name:<36}{r['images_per_s']:>8}{r['ratio_vs_baseline']:>8}{r['min_cosine_vs_fp32']:>17}")
    save_bars(args.out, "embedding_speed", rows, value="images_per_s",
              xlabel="images / second (EfficientNet-Lite0, 224 px, CPU)")

if __name__ == "__main__":
    main()
