"""The reference gallery: SQLite rows + content-addressed originals + the FAISS cache.

Upload order makes a success durable: decode and embed everything (any bad file aborts with
nothing stored) -> fsync the originals -> one SQLite transaction -> add to the in-memory index.
Startup reconciles: references embedded by another model are re-embedded from their originals,
the index is loaded only if it matches the database exactly (else rebuilt), and originals that no
row uses any more (left by a crash between the two steps) are removed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from detector import progress
from detector.blobs import BlobStore, sha256_hex
from detector.embedder import Embedder
from detector.errors import InvalidInputError
from detector.images import load_image
from detector.index import GalleryIndex
from detector.limits import Limits
from detector.store import DB_FILE, NewReference, Reference, Store, validate_brand_slug

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IMAGES_DIR = "images"


@dataclass(frozen=True)
class UploadFile:
    name: str
    data: bytes


class Gallery:
    def __init__(self, data_dir: str | Path, *, embedder: Embedder, model_fingerprint: str, limits: Limits = Limits()):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.data_dir / DB_FILE)
        self.blobs = BlobStore(self.data_dir / IMAGES_DIR)
        self.embedder = embedder
        self.model = model_fingerprint
        self.limits = limits
        self.index = GalleryIndex(embedder.embedding_dim)
        # Uploads and deletes are serialised so that the database and the index change together.
        self._write_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    # --- startup ---

    def open(self) -> "Gallery":
        self.reembed_stale()
        self._load_or_rebuild_index()
        self._remove_orphan_blobs()
        return self

    def reembed_stale(self) -> int:
        stale = self.store.stale_references(self.model)
        if not stale:
            return 0
        log.info("re-embedding %d references for model %s", len(stale), self.model)
        batch_size = 32
        done = 0
        with progress.bar(total=len(stale), desc="re-embedding references") as bar:
            for start in range(0, len(stale), batch_size):
                chunk = stale[start : start + batch_size]
                images = [load_image(self.blobs.get(sha), limits=self.limits, name=f"reference {rid}") for rid, sha in chunk]
                out = self.embedder.embed(images)
                self.store.update_embeddings(
                    [(rid, emb, pat) for (rid, _), emb, pat in zip(chunk, out.vectors, out.patches_per_photo())],
                    model=self.model)
                done += len(chunk)
                bar.update(len(chunk))
                log.info("re-embedded %d/%d references", done, len(stale))
        return done

    def _load_or_rebuild_index(self) -> None:
        ids, brands, _, _ = self.store.all_embeddings(0)
        brand_of = dict(zip(ids.tolist(), brands))
        loaded = GalleryIndex.load(
            self.data_dir / INDEX_FILE, brand_of=brand_of, gallery_version=self.store.gallery_version(),
            model=self.model, dim=self.embedder.embedding_dim,
        )
        if loaded is not None:
            self.index = loaded
            log.info("loaded index with %d references", len(loaded))
            return
        self.rebuild_index()

    def rebuild_index(self) -> int:
        with self._write_lock:
            ids, brands, matrix, _ = self.store.all_embeddings(self.embedder.embedding_dim)
            index = GalleryIndex(self.embedder.embedding_dim)
            index.add(ids, brands, matrix)
            self.index = index
            self._save_index_locked()
            log.info("rebuilt index with %d references", len(index))
            return len(index)

    def save_index(self) -> None:
        with self._write_lock:
            self._save_index_locked()

    def _save_index_locked(self) -> None:
        self.index.save(self.data_dir / INDEX_FILE, gallery_version=self.store.gallery_version(), model=self.model)

    def _remove_orphan_blobs(self) -> None:
        orphans = self.blobs.digests() - self.store.used_digests()
        for digest in orphans:
            self.blobs.delete(digest)
        if orphans:
            log.info("removed %d unreferenced originals", len(orphans))

    # --- brands ---

    def create_brand(self, slug: str, display_name: str | None = None) -> dict:
        return self.store.create_brand(slug, display_name)

    def delete_brand(self, slug: str) -> None:
        with self._write_lock:
            orphaned = self.store.delete_brand(slug)
            self.index.remove_brand(slug)
            for digest in orphaned:
                self.blobs.delete(digest)

    # --- references ---

    def add_references(self, brand: str, files: Sequence[UploadFile], *, product: str | None = None) -> list[Reference]:
        self.store.require_brand(validate_brand_slug(brand))
        if not files:
            raise InvalidInputError("no files were given")
        if len(files) > self.limits.max_files_per_upload:
            raise InvalidInputError(f"{len(files)} files exceeds the limit of {self.limits.max_files_per_upload} per request")
        images = [load_image(f.data, limits=self.limits, name=f.name) for f in files]
        out = self.embedder.embed(images)
        items = [
            NewReference(sha256_hex(f.data), image.width, image.height, embedding, patch)
            for f, image, embedding, patch in zip(files, images, out.vectors, out.patches_per_photo())
        ]
        with self._write_lock:
            for f in files:
                self.blobs.put(f.data)
            references = self.store.add_references(brand, items, product=product, model=self.model)
            fresh = [(r, item) for r, item in zip(references, items) if not r.duplicate]
            self.index.add(
                np.array([r.id for r, _ in fresh], dtype=np.int64),
                [brand] * len(fresh),
                np.stack([item.embedding for _, item in fresh]) if fresh else np.zeros((0, self.index.dim), np.float32),
            )
        return references

    def delete_reference(self, brand: str, ref_id: int) -> None:
        with self._write_lock:
            orphaned = self.store.delete_reference(brand, ref_id)
            self.index.remove([ref_id])
            if orphaned:
                self.blobs.delete(orphaned)

    def references_by_ids(self, ids: list[int]) -> dict[int, Reference]:
        return self.store.references_by_ids(ids)

    def reference_patches(self, ids: list[int]) -> dict[int, np.ndarray]:
        width = self.embedder.patch_record_width
        return {} if width is None else self.store.reference_patches(ids, width)

    def reference_image(self, brand: str, ref_id: int) -> tuple[Reference, bytes]:
        reference = self.store.get_reference(brand, ref_id)
        return reference, self.blobs.get(reference.sha256)
