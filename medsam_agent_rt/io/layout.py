"""How a 2-D image is laid out inside a 3-D voxel volume (pure NumPy).

A :class:`SliceLayout` says which voxel axis was sliced and at which index, which of the two
remaining voxel axes runs down the image rows and which along the columns, and whether each
runs backwards. The NIfTI reader uses it to cut the 2-D image out of a volume and the mask
writer uses the very same object to put a 2-D mask back into the voxels it came from, so the two
can never disagree.

Two layouts are built here:

- ``"display"`` (the default of the reader): the radiological view a clinician expects,
  from the voxel-to-world orientation (RAS+). Axial: anterior at the top, the patient's right
  on the image's left. Coronal: superior at the top, patient's right on the left. Sagittal:
  superior at the top, anterior on the left. The plane is named by the world axis closest to
  the sliced voxel axis (oblique volumes use the closest axes, as nibabel's ``io_orientation``).
- ``"voxel"``: no reorientation: rows follow the lower-numbered remaining voxel axis, columns
  the higher one, both increasing (what ``np.take(data, index, axis)`` gives).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ORIENTATIONS = ("display", "voxel")


@dataclass(frozen=True)
class SliceLayout:
    """A 2-D image's place in a volume. ``volume_shape`` is the spatial (3-D) shape; the image
    has ``volume_shape[row_axis]`` rows and ``volume_shape[col_axis]`` columns; pixel (r, c)
    sits at voxel index ``index`` on ``axis``, ``r`` (or ``n - 1 - r`` when ``row_flip``) on
    ``row_axis`` and likewise ``c`` on ``col_axis``."""

    volume_shape: tuple[int, int, int]
    axis: int
    index: int
    row_axis: int
    col_axis: int
    row_flip: bool = False
    col_flip: bool = False
    orientation: str = "voxel"
    plane: str | None = None

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.volume_shape[self.row_axis], self.volume_shape[self.col_axis])

    def extract(self, plane: np.ndarray) -> np.ndarray:
        """The image from ``plane = np.take(volume, index, axis)`` (its first two axes are the
        remaining voxel axes in increasing order; trailing axes, e.g. colour, are kept)."""
        img = plane if self.row_axis < self.col_axis else np.swapaxes(plane, 0, 1)
        if self.row_flip:
            img = img[::-1]
        if self.col_flip:
            img = img[:, ::-1]
        return np.ascontiguousarray(img)

    def to_plane(self, image: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`extract`: ``image`` ((rows, cols)) in ``np.take`` plane order."""
        image = np.asarray(image)
        if image.shape != self.image_shape:
            raise ValueError(
                f"image must have the layout's shape {self.image_shape}, got {image.shape}"
            )
        img = image
        if self.row_flip:
            img = img[::-1]
        if self.col_flip:
            img = img[:, ::-1]
        return img.T if self.row_axis > self.col_axis else img

    def insert(self, image: np.ndarray, dtype: np.dtype | type = np.uint8) -> np.ndarray:
        """A zero volume of ``volume_shape`` with ``image`` ((rows, cols)) put back at its slice."""
        img = self.to_plane(image)
        volume = np.zeros(self.volume_shape, dtype=dtype)
        index: list = [slice(None)] * 3
        index[self.axis] = self.index
        volume[tuple(index)] = img
        return volume

    def voxel_of(self, row: int, col: int) -> tuple[int, int, int]:
        """The voxel index (i, j, k) of image pixel (row, col)."""
        n_rows, n_cols = self.image_shape
        voxel = [0, 0, 0]
        voxel[self.axis] = self.index
        voxel[self.row_axis] = n_rows - 1 - row if self.row_flip else row
        voxel[self.col_axis] = n_cols - 1 - col if self.col_flip else col
        return (voxel[0], voxel[1], voxel[2])

    def to_dict(self) -> dict:
        return asdict(self)


def voxel_layout(volume_shape: tuple[int, int, int], axis: int, index: int) -> SliceLayout:
    """Rows along the lower remaining voxel axis, columns along the higher, no flips."""
    a, b = (n for n in range(3) if n != axis)
    return SliceLayout(tuple(int(s) for s in volume_shape), axis, index, a, b)


_PLANES = {0: "sagittal", 1: "coronal", 2: "axial"}


def display_layout(
    volume_shape: tuple[int, int, int], axis: int, index: int, ornt: np.ndarray
) -> SliceLayout:
    """The radiological layout (module docstring) from ``ornt`` ((3, 2): for each voxel axis the
    RAS world axis it is closest to (0 = R, 1 = A, 2 = S) and +1 / -1 for the direction its index
    grows), as ``nibabel.orientations.io_orientation`` returns it.

    Every display axis runs from the + end (right = +x at the image's left, anterior = +y at the
    top / left, superior = +z at the top), so an axis is flipped when its index grows toward +."""
    ornt = np.asarray(ornt, dtype=float)
    if ornt.shape != (3, 2) or np.isnan(ornt).any():
        raise ValueError(f"ornt must be a full (3, 2) orientation, got {ornt.tolist()}")
    world = [int(w) for w in ornt[:, 0]]
    plane_axis = world[axis]
    vertical = 1 if plane_axis == 2 else 2  # axial: A/P down the rows; else S/I
    others = [n for n in range(3) if n != axis]
    row_axis = next(n for n in others if world[n] == vertical)
    col_axis = next(n for n in others if n != row_axis)
    return SliceLayout(
        tuple(int(s) for s in volume_shape),
        axis,
        index,
        row_axis,
        col_axis,
        row_flip=bool(ornt[row_axis, 1] > 0),
        col_flip=bool(ornt[col_axis, 1] > 0),
        orientation="display",
        plane=_PLANES[plane_axis],
    )
