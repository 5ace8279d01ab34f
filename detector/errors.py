"""Typed errors of the detector. Each carries a stable machine-readable ``code``.

The HTTP service maps codes to status codes in one place (``detector/service/errors.py``);
the CLI prints the message and exits non-zero.
"""

from __future__ import annotations


class DetectorError(Exception):
    """Base class: a problem the caller can understand and fix."""

    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidImageError(DetectorError):
    code = "invalid_image"


class ImageTooLargeError(DetectorError):
    """Too many bytes, or too many decoded pixels (decompression bombs)."""

    code = "too_large"


class UnsupportedMediaTypeError(DetectorError):
    code = "unsupported_media_type"


class InvalidInputError(DetectorError):
    code = "validation_error"


class UnknownBrandError(DetectorError):
    code = "unknown_brand"


class NotFoundError(DetectorError):
    code = "not_found"


class ConflictError(DetectorError):
    code = "conflict"


class UnknownBackboneError(DetectorError):
    code = "unknown_backbone"


class ModelFolderError(DetectorError):
    """A model folder is missing a file, or a file does not match the config."""

    code = "model_error"


class FeatureFormatError(DetectorError):
    """A stored alignment-feature file that cannot be read (truncated, another format): it is recomputed."""

    code = "feature_file_error"


class WeightsError(DetectorError):
    code = "weights_error"


class BodyTimeout(DetectorError):
    """The client stopped sending its request body."""

    code = "request_timeout"


class InsufficientStorageError(DetectorError):
    """The disk holding the data directory is full."""

    code = "insufficient_storage"


class StoreUnavailableError(DetectorError):
    """The database server cannot be reached (or went away mid-request); nothing was stored."""

    code = "store_unavailable"


class OverloadedError(DetectorError):
    code = "overloaded"


class AuthError(DetectorError):
    code = "unauthorized"


class ForbiddenError(DetectorError):
    code = "forbidden"
