"""Keypoints and descriptors of a picture at working resolution, and what a reference keeps of itself
for alignment: its working image, keypoints, descriptors, product mask and label box."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
from PIL import Image

from detector.alignment.mask import bounding_box, label_box, product_mask
from detector.alignment.recipe import AlignmentRecipe
from detector.errors import FeatureFormatError

_JPEG_QUALITY = 95


@dataclass(frozen=True)
class View:
    """A picture at working resolution with its keypoints: ``scale`` = working / original pixels."""

    bgr: np.ndarray  # (h, w, 3) uint8
    points: np.ndarray  # (n, 2) float32, working-resolution pixel coordinates
    descriptors: np.ndarray  # (n, 128) uint8
    scale: float

    @cached_property
    def float_descriptors(self) -> np.ndarray:
        """The descriptors as the matcher takes them (converted once per view)."""
        return self.descriptors.astype(np.float32)

    @cached_property
    def _scaled(self) -> dict[float, np.ndarray]:
        return {}

    def scaled(self, scale: float) -> np.ndarray:
        """The picture at ``scale`` (float32, read-only), resized once per scale: the dense search, ECC
        and the colour measures each look at a photo and its candidates at one of a few small sizes, many
        times per check."""
        if scale not in self._scaled:
            self._scaled[scale] = _read_only(_resized(self.bgr, scale).astype(np.float32))
        return self._scaled[scale]

    @property
    def original_size(self) -> tuple[int, int]:
        """(width, height) of the picture this view was made from, in its own pixels."""
        h, w = self.shape
        return round(w / self.scale), round(h / self.scale)

    @property
    def shape(self) -> tuple[int, int]:
        return self.bgr.shape[:2]


@dataclass(frozen=True)
class ReferenceFeatures:
    view: View
    mask: np.ndarray  # (h, w) bool: the product region
    label: tuple[int, int, int, int]  # x0, y0, x1, y1: the region densest in keypoints (logo, label, wordmark)

    @cached_property
    def box(self) -> tuple[int, int, int, int]:
        """x0, y0, x1, y1: the product region's bounding box."""
        return bounding_box(self.mask)

    @cached_property
    def _scaled_masks(self) -> dict[float, np.ndarray]:
        return {}

    def scaled_mask(self, scale: float) -> np.ndarray:
        """The product region at ``scale`` (read-only): a pixel is inside when most of what it covers is."""
        if scale not in self._scaled_masks:
            self._scaled_masks[scale] = _read_only(_resized(self.mask.astype(np.uint8) * 255, scale) > 127)
        return self._scaled_masks[scale]

    @cached_property
    def fits_onto(self) -> dict[int, tuple]:
        """This reference's own keypoint fits onto a brand's other references, filled in by alignment:
        id(other) -> (a weak reference to other, the recipe, the homography or None). The same pair of
        references meets again in every check of the brand while both stay loaded."""
        return {}

    def to_bytes(self) -> bytes:
        ok, jpeg = cv2.imencode(".jpg", self.view.bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise FeatureFormatError("could not encode the reference's working image")
        buffer = io.BytesIO()
        np.savez(buffer, jpeg=jpeg.reshape(-1), points=self.view.points, descriptors=self.view.descriptors,
                 scale=np.float64(self.view.scale), mask=np.packbits(self.mask), shape=np.array(self.mask.shape),
                 label=np.array(self.label, np.int32))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ReferenceFeatures":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as stored:
                h, w = (int(v) for v in stored["shape"])
                bgr = cv2.imdecode(stored["jpeg"], cv2.IMREAD_COLOR)
                mask = np.unpackbits(stored["mask"], count=h * w).reshape(h, w).astype(bool)
                view = View(bgr, stored["points"].astype(np.float32), stored["descriptors"].astype(np.uint8),
                            float(stored["scale"]))
                label = tuple(int(v) for v in stored["label"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise FeatureFormatError(f"unreadable feature file ({exc})") from None
        if bgr is None or bgr.shape[:2] != (h, w) or len(label) != 4:
            raise FeatureFormatError("feature file does not match its own shape")
        return cls(view, mask, label)  # type: ignore[arg-type]


def working_bgr(picture: Image.Image, recipe: AlignmentRecipe) -> tuple[np.ndarray, float]:
    """An RGB picture as a BGR array whose longer side is at most ``recipe.max_side``; and its scale."""
    scale = min(1.0, recipe.max_side / max(picture.size))
    if scale < 1.0:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return cv2.cvtColor(np.asarray(picture.convert("RGB")), cv2.COLOR_RGB2BGR), scale


def describe(bgr: np.ndarray, scale: float, recipe: AlignmentRecipe) -> View:
    """SIFT keypoints (8-bit descriptors) of a working-resolution picture."""
    sift = cv2.SIFT_create(recipe.max_keypoints, 3, recipe.contrast_threshold, 10, 1.6, cv2.CV_8U)
    keypoints, descriptors = sift.detectAndCompute(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), None)
    if descriptors is None or not keypoints:
        return View(bgr, np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8), scale)
    points = np.array([k.pt for k in keypoints], np.float32)
    return View(bgr, points, descriptors.astype(np.uint8), scale)


def photo_view(picture: Image.Image, recipe: AlignmentRecipe) -> View:
    return describe(*working_bgr(picture, recipe), recipe)


def reference_features(view: View, recipe: AlignmentRecipe) -> ReferenceFeatures:
    """What a reference keeps for alignment, from its working-resolution view."""
    mask = product_mask(view.bgr)
    return ReferenceFeatures(view, mask, label_box(mask, view.points, recipe.grid))


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` scaled, never below one pixel a side (a photo may be a few pixels across)."""
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
