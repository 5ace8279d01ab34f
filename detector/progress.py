"""Progress bars for long work (re-embedding, evaluation, synthesis, training).

One owner decides whether bars show: the command line sets it once (``-q`` turns them off, the
service turns them off and logs instead). Code that does long work only asks for a bar.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from tqdm import tqdm

# None: tqdm's own rule (bars on a terminal only); True / False: always / never.
_show: bool | None = None


def show_progress(enabled: bool | None) -> None:
    global _show
    _show = enabled


def bar(*, total: int, desc: str, unit: str = "img", initial: int = 0, here: bool = True) -> tqdm:
    """``here=False``: this process shows no bar for the work (a DDP rank other than 0)."""
    disable = True if not here else None if _show is None else not _show
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable)


@contextmanager
def hidden() -> Iterator[None]:
    """No bars inside (work nested in a longer job that has its own bar)."""
    global _show
    saved, _show = _show, False
    try:
        yield
    finally:
        _show = saved
