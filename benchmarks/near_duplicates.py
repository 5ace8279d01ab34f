"""How well the known-counterfeit matcher's limits separate copies of a photo from other photos.

    python benchmarks/near_duplicates.py --data ../shared/datasets/grocery-store [--per-brand 8]

For listing photos of every other brand: four edits of each photo (resized to 75% and re-encoded
as JPEG quality 70; cropped by 5% on each side; 15% brighter; re-encoded at quality 50) should
match it; every pair of two different photos should not (the dataset also holds byte-identical
photos under two brands and burst shots: pairs with cosine >= 0.995 are reported apart). Reports
the share matched at the limits in ``detector.known_counterfeits``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import save_bars  # noqa: E402
from detector.evaluation.dataset import load_dataset  # noqa: E402
from detector.images import load_image  # noqa: E402
from detector.known_counterfeits import MAX_HASH_DISTANCE, MIN_SIMILARITY  # noqa: E402
from detector.model_folder import load_model  # noqa: E402
from detector.phash import dhash, hamming  # noqa: E402


def _jpeg(image: Image.Image, quality: int, scale: float = 1.0) -> Image.Image:
    buffer = io.BytesIO()
    image.resize((int(image.width * scale), int(image.height * scale))).save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


EDITS = {
    "resized 75% + JPEG q70": lambda im: _jpeg(im, 70, 0.75),
    "cropped 5% each side": lambda im: im.crop((im.width // 20, im.height // 20, im.width - im.width // 20, im.height - im.height // 20)),
    "15% brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "JPEG q50": lambda im: _jpeg(im, 50),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--per-brand", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    samples = [s for brand in dataset.brands[::2] for s in [x for x in dataset.samples if x.brand == brand][: args.per_brand]]
    embedder = load_model().embedder()
    photos = [load_image(s.path.read_bytes(), name=str(s.path)) for s in samples]
    vectors = embedder.embed(photos).vectors
    hashes = [dhash(p) for p in photos]

    def matched(similarity: float, distance: int) -> bool:
        return similarity >= MIN_SIMILARITY and distance <= MAX_HASH_DISTANCE

    rows = {}
    for name, edit in EDITS.items():
        edited = [edit(p) for p in photos]
        edited_vectors = embedder.embed(edited).vectors
        hits = [matched(float(v @ vectors[i]), hamming(dhash(e), hashes[i])) for i, (v, e) in enumerate(zip(edited_vectors, edited))]
        rows[f"copy: {name}"] = {"matched": float(np.mean(hits)), "n": len(hits)}
    similarity = vectors @ vectors.T
    identical, different = [], []
    for a in range(len(photos)):
        for b in range(a + 1, len(photos)):
            (identical if similarity[a, b] >= 0.995 else different).append(matched(float(similarity[a, b]), hamming(hashes[a], hashes[b])))
    rows["different photos"] = {"matched": float(np.mean(different)), "n": len(different)}
    if identical:
        rows["identical photos under two names"] = {"matched": float(np.mean(identical)), "n": len(identical)}
    for row in rows.values():
        row.update(min_similarity=MIN_SIMILARITY, max_hash_distance=MAX_HASH_DISTANCE)
    save_bars(args.out, "near_duplicates", rows, value="matched", xlabel="share matched as a known counterfeit")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
