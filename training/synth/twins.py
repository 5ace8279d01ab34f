"""Each counterfeit listing photo of a synthetic set with its genuine twin and a reference at its pose.

The generator draws an item (its manufacturing tolerance, its print), then a photo (pose, background,
light, blur, noise, occluder, JPEG). Replaying the same draws with the brand's genuine look gives the
genuine twin: the same photo of the genuine item, differing from the counterfeit only by the defect. A
second genuine item, with its own tolerance, drawn at the photo's pose on a studio background without
the photo's nuisances, is a reference that a perfect registration would give. Comparing both photos
with it measures what aligned comparison can do once registration is no longer in question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from training.synth.defects import counterfeit_look
from training.synth.generate import ROLE_IDS, SynthConfig, _brand_jobs, _rng, _tolerance, make_brands, render_size
from training.synth.photo import phone_photo
from training.synth.render import render_product


@dataclass(frozen=True)
class Twins:
    path: str  # the counterfeit's path in the set ``generate`` writes with the same config
    brand: str
    kind: str
    severity: int
    counterfeit: bytes  # JPEG, byte for byte the file ``generate`` writes
    genuine: bytes  # JPEG: the same photo of the genuine item
    reference: bytes  # JPEG: another genuine item at the photo's pose, studio background, no nuisances


def counterfeit_twins(config: SynthConfig) -> Iterator[Twins]:
    """The twins of every counterfeit photo ``generate(config)`` writes, other_brand aside (another
    product has no genuine twin)."""
    brands = make_brands(config)
    size = render_size(config)
    for b, brand in enumerate(brands):
        for role, kind, severity, colourway, k in _brand_jobs(b, brand, config):
            if role != "counterfeit" or kind == "other_brand":
                continue
            rng, image_seed = _rng(config.seed, b, ROLE_IDS[role], k)
            look, severity = counterfeit_look(brand, kind, severity, colourway, rng, brands)
            item_draws = rng.bit_generator.state
            counterfeit = render_product(_tolerance(look, rng), size, rng)
            photo_draws = rng.bit_generator.state
            counterfeit_photo = phone_photo(counterfeit, rng, config.size)
            rng.bit_generator.state = item_draws
            genuine = render_product(_tolerance(brand.look(colourway), rng), size, rng)
            rng.bit_generator.state = photo_draws
            genuine_photo = phone_photo(genuine, rng, config.size)
            other = np.random.default_rng([image_seed, 1])  # another item: its own tolerance
            reference = render_product(_tolerance(brand.look(colourway), other), size, other)
            rng.bit_generator.state = photo_draws
            reference_photo = phone_photo(reference, rng, config.size, nuisances=False)
            yield Twins(f"{brand.slug}/counterfeit/{kind}/cou_{k:03d}.jpg", brand.slug, kind, int(severity),
                        counterfeit_photo, genuine_photo, reference_photo)
