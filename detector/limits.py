"""Every input limit in one object. The service's settings and the CLI each build one; decoding,
checks, uploads and the HTTP layer read the field they enforce."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000  # decoded pixels per image (decompression bombs)
    max_request_pixels: int = 640_000_000  # all images of one request (a full check at max_pixels fits)
    max_decoding_pixels: int = 80_000_000  # held decoded at once by the whole process, every request together
    max_files_per_check: int = 16
    max_files_per_upload: int = 64
    max_batch_listings: int = 64
    max_batch_bytes: int = 64 * 1024 * 1024  # the JSON body of /v1/check/batch

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.name} must be a positive integer, not {value!r}")
        if self.max_decoding_pixels < self.max_pixels or self.max_request_pixels < self.max_pixels:
            raise ValueError("max_decoding_pixels and max_request_pixels must each hold one image of max_pixels")
