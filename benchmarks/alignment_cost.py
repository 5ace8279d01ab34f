"""What aligned verification adds to a check: one-photo checks through the same gallery and photos,
without alignment (decode, embed, search, score: the baseline) and with it (plus the photo's
keypoints, matching against the claimed brand's closest references, dense refinement and the
block comparison), interleaved in one run.

    python benchmarks/alignment_cost.py --data ../shared/datasets/grocery-store [--photos 60]

The gallery holds every reference of the dataset; each listing photo is checked against the brand
it claims. Reference features are computed at upload, as in the service, so they are not counted.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import dataset_gallery, paired_timings, print_timings, save_bars  # noqa: E402
from detector import progress  # noqa: E402
from detector.evaluation.dataset import load_dataset  # noqa: E402
from detector.gallery import UploadFile  # noqa: E402
from detector.model_folder import load_model  # noqa: E402
from detector.pipeline import Detector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a dataset in the evaluation layout")
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    progress.show_progress(True)
    dataset = load_dataset(args.data)
    model = load_model()
    with tempfile.TemporaryDirectory() as workdir:
        gallery = dataset_gallery(workdir, dataset, model)
        detector = Detector(model, gallery)
        samples = random.Random(0).sample(dataset.samples, min(args.photos, len(dataset.samples)))
        plain, aligned, verdicts_aligned = [], [], 0
        bar = progress.bar(total=len(samples), desc="checking")
        for i, sample in enumerate(samples):
            files = [UploadFile(sample.path.name, sample.path.read_bytes())]
            start = time.perf_counter()
            decoded = gallery.decode(files, views=False)
            detector.judge(detector.embedder.embed_tensor(decoded.pixels), brand=sample.brand, listing_id=None)
            middle = time.perf_counter()
            decoded = gallery.decode(files)
            result = detector.judge(detector.embedder.embed_tensor(decoded.pixels), brand=sample.brand, listing_id=None,
                                    views=decoded.views).result
            end = time.perf_counter()
            if i:  # the first of each is a warm-up
                plain.append((middle - start) * 1000)
                aligned.append((end - middle) * 1000)
            verdicts_aligned += bool(result.images[0].alignment and result.images[0].alignment.aligned)
            bar.update(1)
        bar.close()
        gallery.close()
    rows = paired_timings(("check without alignment (baseline)", plain), ("check with alignment", aligned), "added by alignment")
    rows["added by alignment"].update(data=str(args.data), photos=len(plain), aligned_share=verdicts_aligned / len(samples),
                                      references=sum(len(v) for v in dataset.references.values()))
    name = f"alignment_cost_{args.data.name}"
    save_bars(args.out, name, rows, value="median_ms", xlabel="median ms per one-photo check")
    print_timings(rows)
    print(f"{len(plain)} photos, {verdicts_aligned / len(samples):.0%} aligned; wrote {args.out / name}.json/.png")


if __name__ == "__main__":
    main()
