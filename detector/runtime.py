"""Open a data directory with a model: the pieces ``cfd`` commands and the service share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detector.gallery import Gallery
from detector.limits import Limits
from detector.model_folder import LoadedModel
from detector.pipeline import Detector


@dataclass
class Runtime:
    model: LoadedModel
    gallery: Gallery
    detector: Detector

    def close(self) -> None:
        self.gallery.close()


def open_runtime(data_dir: str | Path, model: LoadedModel, *, limits: Limits = Limits(), batch_size: int = 16,
                 reembed: bool = True, align: bool = True, database: str | None = None) -> Runtime:
    """``reembed``: re-embed references another model made (the service does); else refuse (see ``Gallery.open``).
    ``align``: verify check photos by alignment (see ``Detector``). ``database``: a ``postgresql://`` URL
    (default: the data directory's SQLite file)."""
    embedder = model.embedder(batch_size=batch_size)
    # Embeddings depend on the model and, slightly, on the precision: a change of either re-embeds.
    gallery = Gallery(data_dir, embedder=embedder, model_fingerprint=f"{model.fingerprint}-{embedder.precision}", limits=limits,
                      database=database)
    gallery.open(reembed=reembed)
    try:
        detector = Detector(model, gallery, align=align)
    except BaseException:
        gallery.close()
        raise
    return Runtime(model, gallery, detector)
