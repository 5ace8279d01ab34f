"""Open a data directory with a model: the pieces ``cfd`` commands and the service share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detector.gallery import Gallery
from detector.images import MAX_FILES_PER_CHECK, ImageLimits
from detector.model_folder import LoadedModel, load_model
from detector.pipeline import Detector


@dataclass
class Runtime:
    model: LoadedModel
    gallery: Gallery
    detector: Detector

    def close(self) -> None:
        self.gallery.close()


def open_runtime(data_dir: str | Path, *, model_path: str | Path | None = None, precision: str = "auto",
                 batch_size: int = 16, limits: ImageLimits = ImageLimits(), max_files: int = MAX_FILES_PER_CHECK,
                 show_progress: bool = True) -> Runtime:
    model = load_model(model_path)
    embedder = model.embedder(batch_size=batch_size, precision=precision)
    # Embeddings depend on the model and, slightly, on the precision: a change of either re-embeds.
    gallery = Gallery(data_dir, embedder=embedder, model_fingerprint=f"{model.fingerprint}-{embedder.precision}", limits=limits)
    gallery.open(show_progress=show_progress)
    return Runtime(model, gallery, Detector(model, gallery, limits=limits, max_files=max_files))
