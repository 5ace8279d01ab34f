"""What keeping a check on record costs: time and bytes.

    python benchmarks/check_storage.py --data ../shared/datasets/grocery-store [--photos 120]

One-photo checks of listing photos, interleaved in one run: the check without storing it
(decode, embed, search, score: the baseline) and the full ``Detector.check`` (the same plus
writing the photo's original with fsync and one SQLite transaction with the check, its photo's
embedding and signals, and its webhook outbox rows). Bytes: the database's growth per check
(after a WAL checkpoint) and the originals' bytes per check. Alignment is off in both, so the
difference is the storing alone.
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
from detector.gallery import Gallery, UploadFile  # noqa: E402
from detector.model_folder import load_model  # noqa: E402
from detector.pipeline import Detector  # noqa: E402
from detector.store import DB_FILE  # noqa: E402


def _db_bytes(gallery: Gallery) -> int:
    gallery.store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in gallery.data_dir.glob(DB_FILE + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    progress.show_progress(True)
    dataset = load_dataset(args.data)
    model = load_model()
    with tempfile.TemporaryDirectory() as workdir:
        gallery = dataset_gallery(workdir, dataset, model)
        detector = Detector(model, gallery, align=False)
        samples = random.Random(0).sample(dataset.samples, min(args.photos, len(dataset.samples)))
        plain, stored = [], []
        db_before, photo_bytes = _db_bytes(gallery), 0
        with progress.bar(total=len(samples), desc="checking") as bar:
            for i, sample in enumerate(samples):
                files = [UploadFile(sample.path.name, sample.path.read_bytes())]
                start = time.perf_counter()
                decoded = detector.decode(files)
                detector.judge(detector.embedder.embed_tensor(decoded.pixels), brand=sample.brand, listing_id=None)
                middle = time.perf_counter()
                detector.check(files, brand=sample.brand)
                end = time.perf_counter()
                if i:  # the first of each is a warm-up
                    plain.append((middle - start) * 1000)
                    stored.append((end - middle) * 1000)
                photo_bytes += len(files[0].data)
                bar.update(1)
        db_per_check = (_db_bytes(gallery) - db_before) / len(samples)
        gallery.close()
    rows = paired_timings(("check, not stored (baseline)", plain), ("check, stored", stored), "added by storing")
    rows["added by storing"].update(database_bytes_per_check=round(db_per_check), original_bytes_per_check=round(photo_bytes / len(samples)),
                                    photos=len(samples), data=str(args.data))
    name = "check_storage"
    save_bars(args.out, name, rows, value="median_ms", xlabel="median ms per one-photo check (no alignment)")
    print_timings(rows)
    print(f"database {db_per_check / 1024:.1f} KiB and originals {photo_bytes / len(samples) / 1024:.1f} KiB per check; "
          f"wrote {args.out / name}.json/.png")


if __name__ == "__main__":
    main()
