"""Error types of the image readers.

Every problem with an input file (unreadable, corrupt, unsupported, out-of-range frame or slice)
raises :class:`ImageReadError` (a ``ValueError``) whose message starts with the file path and
says what is wrong. A missing file raises the standard ``FileNotFoundError``; a missing optional
package (pydicom, nibabel, tifffile) raises ``ImportError`` naming the extra to install.
"""

from __future__ import annotations

import os


class ImageReadError(ValueError):
    """A file could not be turned into an image. ``path`` is the file, ``problem`` the reason."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnsupportedFormatError(ImageReadError):
    """The file is none of the supported formats (PNG, JPEG, TIFF, BMP, DICOM, NIfTI)."""


class MissingDecoderError(ImageReadError):
    """A DICOM file uses a compressed transfer syntax that no installed pixel handler decodes;
    the message names the transfer syntax and the packages that would decode it."""


def missing_extra(package: str, extra: str, purpose: str) -> ImportError:
    """The ImportError raised when an optional dependency is absent."""
    return ImportError(
        f"{purpose} needs the '{package}' package: pip install 'medsam-agent-rt[{extra}]'"
    )
