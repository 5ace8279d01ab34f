"""How a model sees a photo: ``InputConfig`` (size, crop, resampling, normalisation) and the eval
transform built from it. Weights carry their ``InputConfig``; a model folder stores it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

_RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
INTERPOLATIONS = tuple(_RESAMPLING)


@dataclass(frozen=True)
class InputConfig:
    input_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLING:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {self.interpolation!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need three values")
        if self.input_size < 1 or not 0.0 < self.crop_pct <= 1.0:
            raise ValueError("input_size must be positive and crop_pct in (0, 1]")


class EvalTransform:
    """Resize (shorter side to input_size / crop_pct), centre crop, normalise."""

    def __init__(self, config: InputConfig):
        self.config = config

    @property
    def input_size(self) -> int:
        return self.config.input_size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> float32 tensor (3, input_size, input_size)."""
        c = self.config
        scale_to = max(c.input_size, int(round(c.input_size / c.crop_pct)))
        width, height = image.size
        ratio = scale_to / min(width, height)
        new_size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
        # Shrink huge photos cheaply first; the final resize does the quality filtering.
        if min(width, height) > 4 * scale_to:
            image = image.reduce(max(1, min(width, height) // (2 * scale_to)))
        image = image.resize(new_size, _RESAMPLING[c.interpolation])
        left = (new_size[0] - c.input_size) // 2
        top = (new_size[1] - c.input_size) // 2
        image = image.crop((left, top, left + c.input_size, top + c.input_size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(c.mean, np.float32)) / np.asarray(c.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self(image) for image in images])
