"""Shared output of the benchmarks: the rows as JSON and one horizontal bar chart as PNG."""

from __future__ import annotations

import json
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
