"""Embedder throughput: the naive baseline (fp32, batch 1, NCHW) against batched fp32 and
bf16 autocast with channels_last, fp32 also with its BatchNorms folded into the convolutions
(the fp32 default); the two defaults also with glibc's malloc left as it is (``detector.memory``
not applied); in one run, plus how far each moves the embeddings.

    python benchmarks/embedding_speed.py [--images 96] [--rounds 5]

The model runs in a worker thread, as in the service. An allocator setting is process-wide, so
each round runs one fresh process per allocator, and each times every configuration once
(``--seconds`` of whole passes over the images). This CPU's speed drifts by more than some
differences measured here, so a configuration's figure is its median over the rounds, with the
range beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE = "fp32 batch 1 (baseline)"
PLAIN = dict(fold_norms=False)
TUNED = {BASELINE: dict(batch_size=1, precision="fp32", channels_last=False, **PLAIN),
         "fp32 NCHW batch 16": dict(batch_size=16, precision="fp32", channels_last=False, **PLAIN),
         "fp32 channels_last batch 16": dict(batch_size=16, precision="fp32", channels_last=True, **PLAIN),
         "fp32 channels_last batch 16 folded (fp32 default)": dict(batch_size=16, precision="fp32", channels_last=True),
         "bf16 channels_last batch 16 (bf16 default)": dict(batch_size=16, precision="bf16", channels_last=True)}
UNTUNED = {"fp32 default, malloc untuned": TUNED["fp32 channels_last batch 16 folded (fp32 default)"],
           "bf16 default, malloc untuned": TUNED["bf16 channels_last batch 16 (bf16 default)"]}


def worker(allocator: str, images: int, seconds: float) -> None:
    """One round in this process: every configuration of ``allocator`` once; JSON on stdout."""
    import numpy as np

    from detector.memory import keep_freed_memory
    from detector.embedder import Embedder
    from detector.model_folder import load_model
    from tests.synthetic import STYLES, product_image

    configs = TUNED if allocator == "tuned" else UNTUNED
    if allocator == "tuned" and not keep_freed_memory():
        sys.exit("the allocator could not be tuned on this machine")
    model = load_model()
    pictures = [product_image(brand, i, size=320) for i in range(images // len(STYLES) + 1) for brand in STYLES][:images]
    batch = model.embedder().preprocess(pictures)
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    def images_per_s(embedder: Embedder) -> float:
        embedder.embed_tensor(batch[: embedder.batch_size])  # warm-up
        done, start = 0, time.perf_counter()
        while not done or time.perf_counter() - start < seconds:
            embedder.embed_tensor(batch)
            done += len(batch)
        return done / (time.perf_counter() - start)

    rows = {}
    for name, kwargs in configs.items():
        embedder = Embedder(model.net, model.config.transform(), **kwargs)
        rate = thread.submit(images_per_s, embedder).result()
        rows[name] = {"images_per_s": rate, "vectors": embedder.embed_tensor(batch).vectors.tolist()}
    print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed per configuration and round")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--worker", choices=("tuned", "untuned"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.images, args.seconds)
        return

    import numpy as np
    import torch

    from benchmarks.report import save_bars

    rates: dict[str, list[float]] = {name: [] for name in (*TUNED, *UNTUNED)}
    vectors = {}
    for round_ in range(args.rounds):
        for allocator in ("tuned", "untuned"):
            out = subprocess.run([sys.executable, __file__, "--worker", allocator, "--images", str(args.images),
                                  "--seconds", str(args.seconds)], check=True, capture_output=True, text=True).stdout
            for name, row in json.loads(out.splitlines()[-1]).items():
                rates[name].append(row["images_per_s"])
                vectors[name] = np.asarray(row["vectors"], dtype=np.float32)
        print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{r[-1]:.0f}" for r in rates.values()), flush=True)
    base = statistics.median(rates[BASELINE])
    rows = {name: {"images_per_s": round(statistics.median(r), 1), "min_images_per_s": round(min(r), 1),
                   "max_images_per_s": round(max(r), 1), "ratio_vs_baseline": round(statistics.median(r) / base, 2),
                   "min_cosine_vs_fp32": round(float(np.sum(vectors[name] * vectors[BASELINE], axis=1).min()), 5)}
            for name, r in rates.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images, median of {args.rounds} rounds")
    print(f"{'configuration':<52}{'img/s':>8}{'range':>12}{'ratio':>8}{'min cos vs fp32':>17}")
    for name, r in rows.items():
        spread = f"{r['min_images_per_s']:.0f}-{r['max_images_per_s']:.0f}"
        print(f"{name:<52}{r['images_per_s']:>8}{spread:>12}{r['ratio_vs_baseline']:>8}{r['min_cosine_vs_fp32']:>17}")
    save_bars(args.out, "embedding_speed", rows, value="images_per_s",
              xlabel="images / second (EfficientNet-Lite0, 224 px, CPU; median of rounds)")


if __name__ == "__main__":
    main()
