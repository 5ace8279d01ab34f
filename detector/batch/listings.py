"""The input of ``cfd batch score``: a CSV or Parquet table of listings.

Columns: ``listing_id`` (text), ``brand`` (the claimed brand; empty: predicted) and ``photos``:
local paths or ``file://`` URIs, separated by ``|`` (or, in Parquet, a list of strings). A relative
path is relative to the input file's folder. A problem with one row (a missing photo) is that
row's error in the output, never the job's; a problem with the table itself stops the job before
any work starts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from detector.errors import InvalidInputError

COLUMNS = ("listing_id", "brand", "photos")
PHOTO_SEPARATOR = "|"


@dataclass(frozen=True)
class Listing:
    row: int  # its position in the input: what a resumed job skips by
    listing_id: str | None
    brand: str | None
    photos: tuple[str, ...]  # resolved local paths; a photo that cannot be one is kept as given (its row fails)


def input_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_listings(path: Path) -> list[Listing]:
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"no input file at {path}")
    try:
        if path.suffix.lower() == ".csv":
            table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in COLUMNS}, strings_can_be_null=True))
        elif path.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(path)
        else:
            raise InvalidInputError(f"{path.name}: the input must be a .csv or .parquet file")
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInputError(f"{path.name} cannot be read as a table: {exc}") from None
    if "photos" not in table.column_names:
        raise InvalidInputError(f"{path.name} has no photos column (columns: {', '.join(COLUMNS)})")
    folder = path.parent.resolve()
    ids = table.column("listing_id").to_pylist() if "listing_id" in table.column_names else [None] * table.num_rows
    brands = table.column("brand").to_pylist() if "brand" in table.column_names else [None] * table.num_rows
    return [Listing(row, _text(listing_id), _text(brand), tuple(_local(p, folder) for p in _photo_list(photos)))
            for row, (listing_id, brand, photos) in enumerate(zip(ids, brands, table.column("photos").to_pylist()))]


def _text(value) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value).strip()


def _photo_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(PHOTO_SEPARATOR) if p.strip()]
    return [str(p) for p in value if p is not None and str(p).strip()]


def _local(photo: str, folder: Path) -> str:
    """A path or ``file://`` URI as an absolute path; any other URI is kept as given and fails in its row."""
    parts = urlsplit(photo)
    if parts.scheme == "file":
        return unquote(parts.path)
    if parts.scheme and len(parts.scheme) > 1:  # one letter: a Windows drive, not a scheme
        return photo
    return str((folder / photo).resolve())
