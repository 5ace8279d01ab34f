"""Shared output of the benchmarks: the rows as JSON and one horizontal bar chart as PNG."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def save_bars(out: Path, name: str, rows: dict[str, dict], *, value: str, xlabel: str, height: float = 3.2) -> None:
    """``out/name.json`` with every row, ``out/name.png`` with one bar per row (its ``value``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(7, height))
    ax.barh(list(rows), [r[value] for r in rows.values()])
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=110)
    plt.close(fig)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def paired_timings(baseline: tuple[str, list[float]], variant: tuple[str, list[float]], added: str) -> dict[str, dict]:
    """Rows of median and p95 ms (and the ratio to the baseline's median) of two interleaved timings
    and of their per-sample difference."""
    rows = {}
    for label, values in (baseline, variant, (added, [v - b for b, v in zip(baseline[1], variant[1])])):
        rows[label] = {"median_ms": statistics.median(values), "p95_ms": percentile(values, 95)}
    for row in rows.values():
        row["ratio_to_baseline_median"] = row["median_ms"] / rows[baseline[0]]["median_ms"]
    return rows


def print_timings(rows: dict[str, dict]) -> None:
    width = max(map(len, rows)) + 2
    for label, row in rows.items():
        print(f"{label:{width}s} median {row['median_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms  x{row['ratio_to_baseline_median']:.2f}")


def dataset_gallery(workdir: str | Path, dataset, model):
    """A gallery in ``workdir`` holding every reference of ``dataset`` (features computed at upload)."""
    from detector import progress
    from detector.gallery import Gallery, UploadFile

    gallery = Gallery(workdir, embedder=model.embedder(), model_fingerprint=model.fingerprint).open()
    with progress.bar(total=len(dataset.brands), desc="uploading references") as bar:
        for brand in dataset.brands:
            gallery.create_brand(brand)
            gallery.add_references(brand, [UploadFile(p.name, p.read_bytes()) for p in dataset.references[brand]])
            bar.update(1)
    return gallery
