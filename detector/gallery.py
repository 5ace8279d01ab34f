"""The reference gallery: the store's rows (SQLite or PostgreSQL) + content-addressed originals +
the FAISS cache.

Upload order makes a success durable: decode and embed everything (any bad file aborts with
nothing stored) -> holding the data directory's lock shared: fsync the originals -> one database
transaction -> add to the in-memory index. A rejected upload removes the originals it wrote.
Originals are only ever deleted holding that lock exclusively, after checking again that no row
(a reference's or a stored check's photo) uses them, so no process's clean-up can race another's upload.
Each reference's alignment features (keypoints, product mask; ``detector.alignment``) are derived
data like the index: written with the originals before the commit, recomputed from the original
when missing or made by another recipe, removed with the originals they describe.
Startup reconciles: originals that no row uses (left by a crash between the two steps) and
half-written files are removed first (which frees room on a full disk), references embedded by
another model are re-embedded from their originals (a missing or unreadable original is reported
and left out), the exact vectors are read from the database in bulk, and the saved other-brand
index is reused if its model, recipe and checksum match, brought up to date with references
added or removed since it was saved (else rebuilt).
While running, the index follows the gallery version in the database, so changes made by another
process (a ``cfd`` command beside the service, or another replica) count at the next check.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch

from detector import progress
from detector.alignment.features import ReferenceFeatures, View, photo_view, reference_features
from detector.alignment.recipe import DEFAULT_RECIPE, AlignmentRecipe
from detector.alignment.store import FEATURES_DIR, FeatureStore
from detector.blobs import BlobStore, delete_unused, sha256_hex
from detector.checks import CheckLog
from detector.embedder import Embedder
from detector.errors import DetectorError, InvalidInputError
from detector.datalock import DataDirLock
from detector.derived_files import DerivedFiles
from detector.images import decode, open_image
from detector.index import DEFAULT_INDEX_RECIPE, BrandVectors, GalleryIndex, IndexRecipe
from detector.limits import Limits
from detector.patch_store import PATCHES_DIR, PatchStore
from detector.phash import dhash
from detector.pixel_budget import PixelAllowance, PixelBudget
from detector.store import LOCAL_ACTOR, NewReference, Reference, Store, store_location, validate_brand_slug, validate_product

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IMAGES_DIR = "images"
T = TypeVar("T")


@dataclass(frozen=True)
class UploadFile:
    name: str
    data: bytes


@dataclass(frozen=True)
class Decoded:
    pixels: torch.Tensor  # the model-ready batch
    sizes: list[tuple[int, int]]  # each photo's upright (width, height)
    views: list[View] | None  # each photo at the alignment's working resolution, with its keypoints (if asked for)
    phashes: list[int]  # each photo's perceptual hash (detector.phash)


class Gallery:
    def __init__(self, data_dir: str | Path, *, embedder: Embedder, model_fingerprint: str, limits: Limits = Limits(),
                 alignment: AlignmentRecipe = DEFAULT_RECIPE, index_recipe: IndexRecipe = DEFAULT_INDEX_RECIPE,
                 database: str | None = None):
        """``database``: a ``postgresql://`` URL; by default the data directory's own SQLite file."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(store_location(self.data_dir, database))
        self.blobs = BlobStore(self.data_dir / IMAGES_DIR)
        self.lock = DataDirLock(self.data_dir)
        self.checks = CheckLog(self.store, self.blobs, self.lock)
        self.alignment = alignment
        self.features = FeatureStore(self.data_dir / FEATURES_DIR, alignment)
        width = embedder.patch_record_width
        self.patches = None if width is None else PatchStore(self.data_dir / PATCHES_DIR, model_fingerprint, width)
        self.embedder = embedder
        self.model = model_fingerprint
        self.limits = limits
        self.index_recipe = index_recipe
        self.index = GalleryIndex(embedder.embedding_dim, recipe=index_recipe)
        self._index_version = -1  # the gallery version the in-memory index reflects
        self.pixels = PixelBudget(limits.max_decoding_pixels)
        # Uploads and deletes are serialised so that the database and the index change together.
        self._write_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    # --- startup ---

    def open(self, *, reembed: bool = True) -> "Gallery":
        """``reembed=False``: refuse, rather than re-embed, references made by another model (or
        precision), so that a command run beside a service never swaps the gallery's model under it."""
        # Clean-up first: on a full disk it frees space before anything else needs some.
        self.remove_orphans()
        if not reembed:
            stale = len(self.store.stale_references(self.model))
            if stale:
                raise InvalidInputError(
                    f"{stale} references in {self.data_dir} were embedded by another model or precision; using this "
                    "one would re-embed them all (and a service running on this data directory with its own model "
                    "would then find none of its embeddings): pass --reembed to do it anyway")
        self.reembed_stale()
        self._move_patches_out_of_rows()
        self._load_or_rebuild_index()
        return self

    def reembed_stale(self) -> int:
        """Re-embed references made by another model from their originals; a missing or unreadable
        original is reported and its reference left out of the index, never fatal."""
        stale = self.store.stale_references(self.model)
        if not stale:
            return 0
        log.info("re-embedding %d references for model %s", len(stale), self.model)
        batch_size = 32
        done = 0
        with progress.bar(total=len(stale), desc="re-embedding references") as bar:
            for start in range(0, len(stale), batch_size):
                chunk = stale[start : start + batch_size]
                decoded = [(rid, pixels, sha) for rid, sha in chunk if (pixels := self._decode_original(rid, sha)) is not None]
                if decoded:
                    out = self.embedder.embed_tensor(torch.cat([pixels for _, pixels, _ in decoded]))
                    with self.lock.shared():
                        for (_, _, digest), records in zip(decoded, out.patches_per_photo()):
                            self._put_patches(digest, records)
                        self.store.update_embeddings([(rid, emb) for (rid, _, _), emb in zip(decoded, out.vectors)], model=self.model)
                done += len(chunk)
                bar.update(len(chunk))
                log.info("re-embedded %d/%d references", done, len(stale))
        return done

    def _move_patches_out_of_rows(self) -> None:
        """A database from before the patch store kept patch records in reference rows: write them to
        the patch store, then clear them from the rows (rows of another model were re-embedded)."""
        moved = 0
        while rows := self.store.patches_in_rows(model=self.model):
            with self.lock.shared():
                for _, digest, data in rows:
                    if self.patches is not None:
                        self.patches.put(digest, np.frombuffer(data, np.float16).reshape(-1, self.patches.record_width))
                self.store.clear_row_patches([rid for rid, _, _ in rows])
            moved += len(rows)
        if moved:
            log.info("moved the patch records of %d references out of the database", moved)

    def _put_patches(self, digest: str, records: np.ndarray | None) -> None:
        if self.patches is not None and records is not None:
            self.patches.put(digest, records)

    def _decode_original(self, ref_id: int, digest: str) -> torch.Tensor | None:
        """One reference's original, ready for the model; None (reported) when it is missing or unreadable:
        that reference stays out of the index until it is uploaded again."""
        try:
            return self.decode_stored([digest], views=False).pixels
        except DetectorError as exc:
            log.error("reference %d: its original %s cannot be used (%s); it stays out of the index until it is "
                      "uploaded again", ref_id, digest, exc.message)
            return None

    def _load_or_rebuild_index(self) -> None:
        """The exact vectors come from the store in bulk; the saved other-brand index is reused (and
        brought up to date) when it can be (see ``GalleryIndex.restore``), else built anew and saved."""
        with self._write_lock:
            version = self.store.gallery_version()
            index, how = GalleryIndex.restore(self.data_dir / INDEX_FILE, self._load_vectors(), gallery_version=version,
                                              model=self.model, recipe=self.index_recipe)
            self.index, self._index_version = index, version
            log.info("index of %d references %s", len(index), how)
            if how != "loaded":
                self._save_index_locked()

    def _load_vectors(self) -> BrandVectors:
        dim = self.embedder.embedding_dim
        vectors = BrandVectors(dim)
        counts, max_id = self.store.reference_counts(model=self.model)
        vectors.reserve(counts, max_id)
        # One page is added (converted to fp16) while the database reads the next: both release the GIL.
        with progress.bar(total=sum(counts.values()), desc="loading reference vectors") as bar, \
                ThreadPoolExecutor(1, thread_name_prefix="index-load") as adder:
            adding = None
            for ids, brands, matrix in self.store.iter_embeddings(dim, model=self.model):
                if adding is not None:
                    adding.result()
                adding = adder.submit(vectors.add, ids, brands, matrix)
                bar.update(len(ids))
            if adding is not None:
                adding.result()
        return vectors

    def rebuild_index(self) -> int:
        """Rebuild the index from the store (retraining an approximate one) and save it."""
        with self._write_lock:
            version = self.store.gallery_version()
            self.index = GalleryIndex.from_vectors(self._load_vectors(), recipe=self.index_recipe)
            self._index_version = version
            self._save_index_locked()
            return len(self.index)

    def _sync_locked(self) -> None:
        """Bring the index to the store's references: remove the ones gone, add the new ones. Cheap
        next to a rebuild: only ids are compared and only new vectors read."""
        version = self.store.gallery_version()
        ids, brands = self.store.reference_ids(model=self.model)
        held = self.index.vectors.all_ids()
        self.index.remove(np.setdiff1d(held, ids, assume_unique=True).tolist())
        for new_ids, new_brands, matrix in self.store.iter_embeddings(
                self.embedder.embedding_dim, model=self.model, ids=np.setdiff1d(ids, held, assume_unique=True)):
            self.index.add(new_ids, new_brands, matrix)
        self._index_version = version
        log.info("index follows gallery version %d (%d references)", version, len(self.index))

    def refresh(self) -> None:
        """Follow changes other processes made to the data directory (a ``cfd`` beside the service)."""
        if self.store.gallery_version() != self._index_version:
            with self._write_lock:
                if self.store.gallery_version() != self._index_version:
                    self._sync_locked()

    def save_index(self) -> None:
        with self._write_lock:
            self._save_index_locked()

    def _save_index_locked(self) -> None:
        """The index is a cache: failing to save it (a full disk) is logged, never fatal."""
        try:
            self.index.save(self.data_dir / INDEX_FILE, gallery_version=self._index_version, model=self.model)
        except OSError as exc:
            log.warning("could not save the index cache (%s); it will be rebuilt at the next start", exc)

    def _write(self, change: Callable[[], T], *, apply: Callable[[T], None]) -> T:
        """Run a database change (under the write lock) and ``apply`` it to the index; if any other
        change happened meanwhile (another process's), bring the index to the database instead."""
        before = self.store.gallery_version()
        result = change()
        after = self.store.gallery_version()
        if before == self._index_version and after - before <= 1:
            apply(result)
            self._index_version = after
        else:
            self._sync_locked()
        return result

    def remove_orphans(self) -> int:
        return remove_orphans(self.store, self.blobs, self.lock, *self._derived())

    def _delete_blobs_if_unused(self, digests: Sequence[str]) -> None:
        delete_unused(self.blobs, self.lock, digests, in_use=self.store.used_digests_among, also=self._delete_derived)

    def _delete_derived(self, digest: str) -> None:
        for store in self._derived():
            store.delete(digest)

    def _derived(self) -> list:
        """The stores of data derived from references' originals."""
        return [self.features] + ([self.patches] if self.patches is not None else [])

    # --- brands ---

    def create_brand(self, slug: str, display_name: str | None = None, *, actor: str = LOCAL_ACTOR) -> dict:
        return self.store.create_brand(slug, display_name, actor=actor)

    def delete_brand(self, slug: str, *, actor: str = LOCAL_ACTOR) -> None:
        with self._write_lock:
            orphaned = self._write(lambda: self.store.delete_brand(slug, actor=actor), apply=lambda _: self.index.remove_brand(slug))
            self._delete_blobs_if_unused(orphaned)

    # --- references ---

    def decode(self, files: Sequence[UploadFile], *, allowance: PixelAllowance | None = None, views: bool = True) -> Decoded:
        """Photos -> one model-ready batch, each photo's upright size and (``views``) its alignment view.

        Every header is checked (and the request's pixels counted) before any pixel is decoded;
        then one photo at a time goes straight to the model's input size and the alignment's
        working resolution, within the process's pixel budget, so a request never holds more than
        one full-size picture."""
        pixels = [_pixels(open_image(f.data, limits=self.limits, name=f.name)) for f in files]
        (allowance or PixelAllowance(self.limits.max_request_pixels)).take(sum(pixels), what=f"{len(files)} photo(s)")
        tensors, sizes, working, hashes = [], [], [], []
        for f, count in zip(files, pixels):
            with self.pixels.hold(count):
                # opened again here, so that no decoded picture outlives its turn
                with open_image(f.data, limits=self.limits, name=f.name) as image:
                    picture = decode(image, name=f.name)
                sizes.append(picture.size)
                hashes.append(dhash(picture))
                tensors.append(self.embedder.transform(picture))
                if views:
                    working.append(photo_view(picture, self.alignment))
                picture.close()
        return Decoded(torch.stack(tensors), sizes, working if views else None, hashes)

    def decode_stored(self, digests: Sequence[str], *, views: bool = True) -> Decoded:
        """Stored originals (references', or a stored check's photos) decoded as an upload's are; each
        passed ``max_pixels`` when it was stored, and together they stay within one request's pixels."""
        allowance = PixelAllowance(min(self.limits.max_pixels * len(digests), self.limits.max_request_pixels))
        return self.decode([UploadFile(f"stored photo {d[:12]}", self.blobs.get(d)) for d in digests],
                           allowance=allowance, views=views)

    def add_references(self, brand: str, files: Sequence[UploadFile], *, product: str | None = None,
                       actor: str = LOCAL_ACTOR) -> list[Reference]:
        self.store.require_brand(validate_brand_slug(brand))
        product = validate_product(product)
        if not files:
            raise InvalidInputError("no files were given")
        if len(files) > self.limits.max_files_per_upload:
            raise InvalidInputError(f"{len(files)} files exceeds the limit of {self.limits.max_files_per_upload} per request")
        decoded = self.decode(files)
        out = self.embedder.embed_tensor(decoded.pixels)
        items = [NewReference(sha256_hex(f.data), width, height, embedding, patch)
                 for f, (width, height), embedding, patch in zip(files, decoded.sizes, out.vectors, out.patches_per_photo())]
        features = [reference_features(view, self.alignment) for view in decoded.views]
        with self._write_lock:
            try:
                # Shared: orphan clean-up (exclusive) never runs between writing the originals and committing their rows.
                with self.lock.shared():
                    for f, item, feature in zip(files, items, features):
                        self.blobs.put(f.data)
                        self.features.put(item.sha256, feature)
                        self._put_patches(item.sha256, item.patches)
                    return self._write(lambda: self.store.add_references(brand, items, product=product, model=self.model, actor=actor),
                                       apply=lambda refs: self._index_added(brand, refs, items))
            except BaseException:
                self._delete_blobs_if_unused([item.sha256 for item in items])  # a rejected upload leaves nothing behind
                raise

    def _index_added(self, brand: str, references: list[Reference], items: list[NewReference]) -> None:
        fresh = [(r, item) for r, item in zip(references, items) if not r.duplicate]
        self.index.add(np.array([r.id for r, _ in fresh], dtype=np.int64), [brand] * len(fresh),
                       np.stack([item.embedding for _, item in fresh]) if fresh else np.zeros((0, self.index.dim), np.float32))

    def delete_reference(self, brand: str, ref_id: int, *, actor: str = LOCAL_ACTOR) -> None:
        with self._write_lock:
            orphaned = self._write(lambda: self.store.delete_reference(brand, ref_id, actor=actor), apply=lambda _: self.index.remove([ref_id]))
            self._delete_blobs_if_unused([orphaned] if orphaned else [])

    def references_by_ids(self, ids: list[int]) -> dict[int, Reference]:
        return self.store.references_by_ids(ids)

    def reference_patches(self, ids: list[int]) -> dict[int, np.ndarray]:
        """Patch records by reference id (none for a model without a patch head)."""
        return {} if self.patches is None else self._derived_by_ids(ids, self.patches, self._compute_patches)

    def reference_features(self, ids: list[int]) -> dict[int, ReferenceFeatures]:
        """Alignment features by reference id (those of another recipe, or of another process's upload
        before this recipe, are recomputed)."""
        return self._derived_by_ids(ids, self.features, self._compute_features)

    def _derived_by_ids(self, ids: list[int], files: DerivedFiles[T], compute: Callable[[Reference], T | None]) -> dict[int, T]:
        """What ``files`` holds for each reference; what is missing is computed from the original and
        stored (a cache: a check never fails for want of room to keep it). A reference whose original
        is gone is left out."""
        found = {}
        for rid, reference in self.store.references_by_ids(ids).items():
            value = files.get(reference.sha256)
            if value is None and (value := compute(reference)) is not None:
                try:
                    files.put(reference.sha256, value)
                except (OSError, DetectorError) as exc:
                    log.warning("could not store the %s of reference %d (%s)", files.what, reference.id, exc)
            if value is not None:
                found[rid] = value
        return found

    def _compute_patches(self, reference: Reference) -> np.ndarray | None:
        pixels = self._decode_original(reference.id, reference.sha256)
        return None if pixels is None else self.embedder.embed_tensor(pixels).patches_per_photo()[0]

    def _compute_features(self, reference: Reference) -> ReferenceFeatures | None:
        try:
            return reference_features(self.decode_stored([reference.sha256]).views[0], self.alignment)
        except DetectorError as exc:
            log.error("reference %d: no alignment features (%s)", reference.id, exc.message)
            return None

    def reference_image(self, brand: str, ref_id: int) -> tuple[Reference, bytes]:
        reference = self.store.get_reference(brand, ref_id)
        return reference, self.blobs.get(reference.sha256)


def remove_orphans(store: Store, blobs: BlobStore, lock: DataDirLock, *derived: DerivedFiles) -> int:
    """Originals and derived files (alignment features, patch records) no row uses, half-written
    temporary files and other recipes' or models' derived files, removed while no writer is active
    (in any process: writers hold ``lock`` shared from writing originals to committing rows)."""
    with lock.exclusive():
        leftovers = blobs.remove_temporary_files() + sum(d.remove_leftovers() for d in derived)
        orphans = blobs.digests() - store.used_digests()
        for digest in orphans:
            blobs.delete(digest)
        in_use = store.reference_digests()
        for files in derived:
            for digest in files.digests() - in_use:
                files.delete(digest)
    if orphans or leftovers:
        log.info("removed %d unreferenced originals and %d temporary files", len(orphans), leftovers)
    return len(orphans)


def _pixels(image) -> int:
    """Decoded pixels of an opened (header-only) image; closes it."""
    with image:
        return image.width * image.height
