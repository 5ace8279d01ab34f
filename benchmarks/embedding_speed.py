"""Embedder throughput: the naive baseline (fp32, batch 1, NCHW) against batched fp32 and
bf16 autocast with channels_last, fp32 also with its BatchNorms folded into the convolutions
(the fp32 default); then what each of the service's process settings is worth: the defaults (and
the baseline) with a second OpenMP team in the process (``detector.compute`` not applied), and
with glibc's malloc as it is (``detector.memory`` not applied); in one run, plus how far each
configuration moves the embeddings.

    python benchmarks/embedding_speed.py [--images 96] [--rounds 5]

The model runs on a compute thread, as in the service. Process settings cannot be undone, so each
round runs one fresh process per kind, and each times its configurations once (``--seconds`` of
whole passes over the images). This CPU's speed drifts by more than some differences measured
here, so a configuration's figure is its median over the rounds, with the range beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE = "fp32 batch 1 (baseline)"
FP32_DEFAULT = "fp32 channels_last batch 16 folded (fp32 default)"
BF16_DEFAULT = "bf16 channels_last batch 16 (bf16 default)"
PLAIN = dict(fold_norms=False)
CONFIGS = {BASELINE: dict(batch_size=1, precision="fp32", channels_last=False, **PLAIN),
           "fp32 NCHW batch 16": dict(batch_size=16, precision="fp32", channels_last=False, **PLAIN),
           "fp32 channels_last batch 16": dict(batch_size=16, precision="fp32", channels_last=True, **PLAIN),
           FP32_DEFAULT: dict(batch_size=16, precision="fp32", channels_last=True),
           BF16_DEFAULT: dict(batch_size=16, precision="bf16", channels_last=True)}
# kind: (malloc tuned, one OpenMP team, configurations)
KINDS = {"service": (True, True, list(CONFIGS)),
         "two OpenMP teams": (True, False, [BASELINE, FP32_DEFAULT, BF16_DEFAULT]),
         "malloc untuned": (False, True, [FP32_DEFAULT, BF16_DEFAULT])}


def row_name(kind: str, config: str) -> str:
    return config if kind == "service" else f"{config}, {kind}"


def worker(kind: str, images: int, seconds: float) -> None:
    """One round in this process: every configuration of ``kind`` once; JSON on stdout."""
    from detector.compute import ComputeThread, take_intra_op_threads
    from detector.memory import keep_freed_memory

    tuned, one_team, configs = KINDS[kind]
    if tuned and not keep_freed_memory():
        sys.exit("malloc could not be tuned on this machine")
    compute = take_intra_op_threads() if one_team else ComputeThread()

    from detector.embedder import Embedder
    from detector.model_folder import load_model
    from tests.synthetic import STYLES, product_image

    model = load_model()
    pictures = [product_image(brand, i, size=320) for i in range(images // len(STYLES) + 1) for brand in STYLES][:images]
    batch = model.embedder().preprocess(pictures)

    def images_per_s(embedder: Embedder) -> float:
        embedder.embed_tensor(batch[: embedder.batch_size])  # warm-up
        done, start = 0, time.perf_counter()
        while not done or time.perf_counter() - start < seconds:
            embedder.embed_tensor(batch)
            done += len(batch)
        return done / (time.perf_counter() - start)

    rows = {}
    for config in configs:
        embedder = Embedder(model.net, model.config.transform(), **CONFIGS[config])
        embedder.run_on(compute)
        rows[row_name(kind, config)] = {"images_per_s": images_per_s(embedder),
                                        "vectors": embedder.embed_tensor(batch).vectors.tolist()}
    compute.shutdown()
    print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed per configuration and round")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--worker", choices=list(KINDS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.images, args.seconds)
        return

    import numpy as np
    import torch

    from benchmarks.report import save_bars

    rates: dict[str, list[float]] = {row_name(kind, c): [] for kind, (_, _, configs) in KINDS.items() for c in configs}
    vectors = {}
    for round_ in range(args.rounds):
        for kind in KINDS:
            out = subprocess.run([sys.executable, __file__, "--worker", kind, "--images", str(args.images),
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
    print(f"{'configuration':<70}{'img/s':>8}{'range':>12}{'ratio':>8}{'min cos vs fp32':>17}")
    for name, r in rows.items():
        spread = f"{r['min_images_per_s']:.0f}-{r['max_images_per_s']:.0f}"
        print(f"{name:<70}{r['images_per_s']:>8}{spread:>12}{r['ratio_vs_baseline']:>8}{r['min_cosine_vs_fp32']:>17}")
    save_bars(args.out, "embedding_speed", rows, value="images_per_s",
              xlabel="images / second (EfficientNet-Lite0, 224 px, CPU; median of rounds)")


if __name__ == "__main__":
    main()
