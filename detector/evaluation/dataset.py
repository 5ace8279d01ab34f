"""Read a dataset in the layout ``<brand>/references|genuine|counterfeit/<kind>/**``.

If a ``manifest.csv`` sits at the dataset root (the synthetic generator writes one), its
``severity`` and ``split`` columns are attached to the samples by relative path.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from detector.errors import InvalidInputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass(frozen=True)
class Sample:
    brand: str
    path: Path
    label: int  # 1 counterfeit, 0 genuine
    kind: str  # "genuine" or the counterfeit kind
    severity: str = ""
    split: str = ""


@dataclass(frozen=True)
class Dataset:
    root: Path
    references: dict[str, list[Path]]
    samples: list[Sample]

    @property
    def brands(self) -> list[str]:
        return sorted(self.references)


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _manifest(root: Path) -> dict[str, dict[str, str]]:
    path = root / "manifest.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle) if "path" in row}


def load_dataset(root: str | Path) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"dataset folder {root} does not exist")
    manifest = _manifest(root)
    references: dict[str, list[Path]] = {}
    samples: list[Sample] = []
    for brand_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        refs = _images(brand_dir / "references")
        if not refs:
            continue
        references[brand_dir.name] = refs
        groups = [(0, "genuine", brand_dir / "genuine")]
        counterfeit_dir = brand_dir / "counterfeit"
        if counterfeit_dir.is_dir():
            groups += [(1, d.name, d) for d in sorted(counterfeit_dir.iterdir()) if d.is_dir()]
        for label, kind, folder in groups:
            for path in _images(folder):
                row = manifest.get(path.relative_to(root).as_posix(), {})
                samples.append(Sample(brand_dir.name, path, label, kind, row.get("severity", ""), row.get("split", "")))
    if not references:
        raise InvalidInputError(f"{root}: no <brand>/references/ folders with images found")
    return Dataset(root, references, samples)
