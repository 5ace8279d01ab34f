"""Content-addressed store of original uploaded bytes: ``images/ab/abcdef...`` by sha256."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable, Sequence

from detector.errors import NotFoundError
from detector.fsutil import atomic_write_bytes, disk_full_is_typed

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if not _SHA256.match(digest):
            raise NotFoundError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store ``data`` durably (fsynced before return); idempotent."""
        digest = sha256_hex(data)
        target = self.path(digest)
        if not target.exists():
            with disk_full_is_typed():
                atomic_write_bytes(target, data)
        return digest

    def get(self, digest: str) -> bytes:
        target = self.path(digest)
        if not target.is_file():
            raise NotFoundError(f"original image {digest} is missing from the image store")
        return target.read_bytes()

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> set[str]:
        return {p.name for p in self.root.glob("??/*") if _SHA256.match(p.name)}

    def remove_temporary_files(self) -> int:
        """Half-written files a killed writer left behind (call only where no writer is active)."""
        leftovers = list(self.root.glob("??/.*.tmp"))
        for path in leftovers:
            path.unlink(missing_ok=True)
        return len(leftovers)


def delete_unused(blobs: BlobStore, lock, digests: Sequence[str], *, in_use: Callable[[list[str]], set[str]],
                  also: Callable[[str], None] | None = None) -> None:
    """Delete the originals among ``digests`` that no row uses (``in_use`` asks the database), holding
    the data directory's lock (``detector.datalock``) exclusively, so no upload is between writing
    its originals and committing its rows; ``also`` removes what was derived from each."""
    if not digests:
        return
    with lock.exclusive():
        used = in_use(list(digests))
        for digest in digests:
            if digest not in used:
                blobs.delete(digest)
                if also is not None:
                    also(digest)
