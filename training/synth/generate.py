"""``cfd data synth``: write a synthetic benchmark in the evaluation layout, with manifest.csv.

Every image has its own seed derived from (dataset seed, brand, role, index), so the output is
identical for the same arguments whatever order or machine it is generated on.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from detector import progress
from detector.fsutil import atomic_write_bytes
from training.synth.brand import Brand, make_brand
from training.synth.defects import KINDS, SEVERITIES, counterfeit_look
from training.synth.photo import phone_photo, studio_shot
from training.synth.render import render_product

RENDER_SIZE = 320  # at least; larger photos render the item at their own size, so detail is real, not upscaled
# Manufacturing tolerance: every item (reference, genuine or counterfeit) places and sizes its logo
# a little differently, so aligned comparison must tolerate genuine variation, not find pixel-identical copies.
LOGO_OFFSET_SD = 0.004  # product widths
LOGO_SCALE_SD = 0.015
MANIFEST_FIELDS = ("path", "brand", "split", "role", "kind", "severity", "colourway", "product_type", "seed")
ROLE_IDS = {"references": 0, "genuine": 1, "counterfeit": 2}


@dataclass(frozen=True)
class SynthConfig:
    brands: int = 12
    seed: int = 0
    references: int = 8
    genuine: int = 16
    per_severity: int = 1  # counterfeit photos per kind and severity
    size: int = 512
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train / val / test brands


def _rng(seed: int, *parts: int) -> tuple[np.random.Generator, int]:
    sequence = np.random.SeedSequence([seed, *parts])
    image_seed = int(sequence.generate_state(1)[0])
    return np.random.default_rng(image_seed), image_seed


def render_size(config: SynthConfig) -> int:
    return max(RENDER_SIZE, config.size)


def make_brands(config: SynthConfig) -> list[Brand]:
    return [make_brand(_rng(config.seed, 1000, b)[0], b) for b in range(config.brands)]


def assign_splits(brands: list[Brand], config: SynthConfig) -> dict[str, str]:
    order = np.random.default_rng([config.seed, 7]).permutation(len(brands))
    n_train = int(round(config.split[0] * len(brands)))
    n_val = int(round(config.split[1] * len(brands)))
    names = ["train"] * n_train + ["val"] * n_val + ["test"] * (len(brands) - n_train - n_val)
    return {brands[i].slug: names[rank] for rank, i in enumerate(order)}


def _brand_jobs(b: int, brand: Brand, config: SynthConfig):
    for k in range(config.references):
        yield "references", "", 0, k % len(brand.colourways), k
    for k in range(config.genuine):
        yield "genuine", "", 0, k % len(brand.colourways), k
    k = 0
    for kind in KINDS:
        for severity in SEVERITIES:
            for _ in range(config.per_severity):
                yield "counterfeit", kind, severity, k % len(brand.colourways), k
                k += 1


def _tolerance(look, rng: np.random.Generator):
    return look.with_(logo_dx=look.logo_dx + rng.normal(0, LOGO_OFFSET_SD), logo_dy=look.logo_dy + rng.normal(0, LOGO_OFFSET_SD),
                      logo_scale=look.logo_scale * float(np.exp(rng.normal(0, LOGO_SCALE_SD))))


def generate(out: str | Path, config: SynthConfig = SynthConfig(), *, contact_sheet: bool = False) -> list[dict]:
    out = Path(out)
    brands = make_brands(config)
    splits = assign_splits(brands, config)
    rows: list[dict] = []
    total = config.brands * (config.references + config.genuine + len(KINDS) * len(SEVERITIES) * config.per_severity)
    with progress.bar(total=total, desc="synthesising photos") as bar:
        for b, brand in enumerate(brands):
            for role, kind, severity, colourway, k in _brand_jobs(b, brand, config):
                rng, image_seed = _rng(config.seed, b, ROLE_IDS[role], k)
                if role == "counterfeit":
                    look, severity = counterfeit_look(brand, kind, severity, colourway, rng, brands)
                    folder = f"{brand.slug}/counterfeit/{kind}"
                else:
                    look = brand.look(colourway)
                    folder = f"{brand.slug}/{role}"
                product = render_product(_tolerance(look, rng), render_size(config), rng)
                data = studio_shot(product, rng, config.size) if role == "references" else phone_photo(product, rng, config.size)
                relative = f"{folder}/{role[:3]}_{k:03d}.jpg"
                atomic_write_bytes(out / relative, data)
                rows.append({"path": relative, "brand": brand.slug, "split": splits[brand.slug], "role": role,
                             "kind": kind or ("reference" if role == "references" else "genuine"),
                             "severity": severity or "", "colourway": colourway, "product_type": brand.product_type,
                             "seed": image_seed})
                bar.update(1)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / "manifest.csv", buffer.getvalue().encode())
    if contact_sheet:
        write_contact_sheet(out, rows, brands)
    return rows


def write_contact_sheet(out: Path, rows: list[dict], brands: list[Brand], *, max_brands: int = 8, thumb: int = 112) -> Path:
    """One row per brand: a reference, a genuine photo, then each counterfeit kind at its highest severity."""
    columns = ["reference", "genuine", *KINDS]
    shown = brands[:max_brands]
    sheet = Image.new("RGB", (thumb * len(columns), (thumb + 14) * len(shown) + 16), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        draw.text((c * thumb + 4, 2), name, fill="black")
    for r, brand in enumerate(shown):
        mine = [row for row in rows if row["brand"] == brand.slug]
        for c, name in enumerate(columns):
            candidates = [row for row in mine if row["kind"] == name]
            if not candidates:
                continue
            pick = max(candidates, key=lambda row: int(row["severity"] or 0))
            image = Image.open(out / pick["path"]).convert("RGB").resize((thumb, thumb))
            y = 16 + r * (thumb + 14)
            sheet.paste(image, (c * thumb, y))
            draw.text((c * thumb + 2, y + thumb), f"{brand.slug[:14]} s{pick['severity'] or '-'}", fill="black")
    path = out / "contact_sheet.png"
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return path
