"""A lock on a data directory shared by every process that uses it (the service and any ``cfd``).

Writers that put originals and then commit their rows hold it shared for that span; whatever
deletes originals (orphan clean-up, the last reference to some bytes going away) holds it
exclusively and checks again under it that no row uses them. So clean-up never races an upload,
in this process or another. ``flock`` locks belong to the open file, so threads each open their own.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_FILE = "write.lock"


class DataDirLock:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_FILE

    @contextmanager
    def _held(self, mode: int) -> Iterator[None]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing the file releases its lock

    def shared(self):
        return self._held(fcntl.LOCK_SH)

    def exclusive(self):
        return self._held(fcntl.LOCK_EX)
