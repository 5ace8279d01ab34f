"""Counterfeit kinds, each at severity 1 (subtle) to 3 (obvious)."""

from __future__ import annotations

import colorsys
from dataclasses import replace

import numpy as np

from training.synth.brand import FONT_FILES, HARDWARE, SHAPES, TEXTURES, Brand, Look

KINDS = ("logo", "wordmark", "colour", "placement", "print", "material", "other_brand")
SEVERITIES = (1, 2, 3)


def _shift_hue(rgb, amount: float):
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    if s < 0.15:  # greys have no hue to shift: push saturation instead
        s = min(1.0, s + amount * 2)
        h = 0.08
    r, g, b = colorsys.hsv_to_rgb((h + amount) % 1.0, s, v)
    return (int(r * 255), int(g * 255), int(b * 255))


def logo_defect(look: Look, severity: int, rng: np.random.Generator) -> Look:
    magnitude = (0.12, 0.25, 0.45)[severity - 1]
    logo = list(look.logo)
    i = int(rng.integers(0, len(logo)))
    p = logo[i]
    p = replace(p, x=float(np.clip(p.x + rng.choice([-1, 1]) * magnitude * 0.4, 0.1, 0.9)),
                size=p.size * float(1 + rng.choice([-1, 1]) * magnitude * 0.6), rotation=p.rotation + magnitude * 90)
    if severity >= 2:
        p = replace(p, shape=str(rng.choice([s for s in SHAPES if s != p.shape])))
    logo[i] = p
    if severity == 3 and len(logo) > 2:
        logo.pop(int(rng.integers(0, len(logo))))
    return look.with_(logo=tuple(logo))


def _misspell(word: str, edits: int, rng: np.random.Generator) -> str:
    letters = list(word)
    for _ in range(edits):
        i = int(rng.integers(1, len(letters)))
        if rng.random() < 0.5 and i < len(letters) - 1:
            letters[i], letters[i + 1] = letters[i + 1], letters[i]
        else:
            pool = "aeiouy" if letters[i].lower() in "aeiou" else "bcdfghklmnprstvz"
            new = str(rng.choice([c for c in pool if c != letters[i].lower()]))
            letters[i] = new.upper() if letters[i].isupper() else new
    result = "".join(letters)
    return result if result != word else word[:-1] + ("x" if word[-1] != "x" else "z")


def wordmark_defect(look: Look, severity: int, rng: np.random.Generator) -> Look:
    if rng.random() < 0.5:
        return look.with_(wordmark=_misspell(look.wordmark, severity, rng))
    family = look.font.split("-")[0].split(".")[0].rstrip("0123456789")
    same_family = [f for f in FONT_FILES if f != look.font and f.startswith(family)]
    other = [f for f in FONT_FILES if not f.startswith(family)]
    font = str(rng.choice(same_family if severity == 1 and same_family else other))
    wordmark = look.wordmark.swapcase() if severity == 3 else look.wordmark
    return look.with_(font=font, wordmark=wordmark)


def colour_defect(look: Look, severity: int, rng: np.random.Generator) -> Look:
    amount = float(rng.choice([-1, 1])) * (0.05, 0.1, 0.2)[severity - 1]
    logo = tuple(replace(p, colour=_shift_hue(p.colour, amount)) for p in look.logo)
    return look.with_(logo=logo, wordmark_colour=_shift_hue(look.wordmark_colour, amount),
                      body=_shift_hue(look.body, amount / 2), trim=_shift_hue(look.trim, amount / 2))


def placement_defect(look: Look, severity: int, rng: np.random.Generator) -> Look:
    offset = (0.04, 0.08, 0.13)[severity - 1]
    angle = rng.uniform(0, 2 * np.pi)
    scale = (1.15, 1.3, 1.5)[severity - 1]
    scale = scale if rng.random() < 0.5 else 1 / scale
    return look.with_(logo_dx=offset * np.cos(angle), logo_dy=offset * np.sin(angle), logo_scale=scale)


def print_defect(look: Look, severity: int, rng: np.random.Generator) -> Look:
    return look.with_(print_damage=(0.3, 0.6, 1.0)[severity - 1])


def material_defect(look: Look, severity: int, rng: np.random.Generator) -> Look:
    spacing = look.stitch_spacing + int(rng.choice([-1, 1])) * (3, 4, 5)[severity - 1]
    changes = {"stitch_spacing": max(3, spacing), "stitch_colour": _shift_hue(look.stitch_colour, 0.3)}
    if severity >= 2:
        changes["texture"] = str(rng.choice([t for t in TEXTURES if t != look.texture]))
    if severity == 3:
        changes["hardware"] = str(rng.choice([h for h in HARDWARE if h != look.hardware]))
    return look.with_(**changes)


DEFECTS = {"logo": logo_defect, "wordmark": wordmark_defect, "colour": colour_defect, "placement": placement_defect,
           "print": print_defect, "material": material_defect}


def counterfeit_look(brand: Brand, kind: str, severity: int, colourway: int, rng: np.random.Generator,
                     brands: list[Brand]) -> tuple[Look, int]:
    """The look of a counterfeit of ``brand``; other_brand returns (look, severity by similarity)."""
    if kind == "other_brand":
        others = [b for b in brands if b.slug != brand.slug]
        same_type = [b for b in others if b.product_type == brand.product_type]
        # severity 1: same product type (the harder case); 3: a different product entirely
        pool = same_type if severity < 3 and same_type else others
        other = pool[int(rng.integers(0, len(pool)))]
        return other.look(int(rng.integers(0, len(other.colourways)))), 1 if other.product_type == brand.product_type else 3
    return DEFECTS[kind](brand.look(colourway), severity, rng), severity
