"""The model's own eval transform: resize, centre crop, normalise. Parameters come from config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

_RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class EvalTransform:
    input_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> float32 tensor (3, input_size, input_size)."""
        scale_to = max(self.input_size, int(round(self.input_size / self.crop_pct)))
        width, height = image.size
        ratio = scale_to / min(width, height)
        new_size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
        # Shrink huge photos cheaply first; the final resize does the quality filtering.
        if min(width, height) > 4 * scale_to:
            image = image.reduce(max(1, min(width, height) // (2 * scale_to)))
        image = image.resize(new_size, _RESAMPLING[self.interpolation])
        left = (new_size[0] - self.input_size) // 2
        top = (new_size[1] - self.input_size) // 2
        image = image.crop((left, top, left + self.input_size, top + self.input_size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self(image) for image in images])
