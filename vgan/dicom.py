"""Fundus photographs as clinics' cameras export them: DICOM (Ophthalmic Photography, modality OP).

A screening camera sends its photographs to the hospital archive as DICOM files: RGB or, compressed, JPEG
(stored as YCbCr) or JPEG 2000, grey for red-free photographs, sometimes 10 or 12 bits in 16, often saved from
an archive without a file suffix. `decode_dicom` gives the pixels `vgan.images.decode_image` gives for any
other file: (H, W) or (H, W, 3), uint8, uint16 or float32 in [0, 1], RGB, as the photograph is shown.
What it cannot take without guessing (several frames, no image, pixel data no installed decoder reads) it
refuses naming the file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vgan.errors import DataError

PREAMBLE = 128  # a DICOM file's bytes: a 128-byte preamble, then "DICM"
MAGIC = b"DICM"
DICOM_NOTE = "read from DICOM"


def is_dicom(data: bytes) -> bool:
    return data[PREAMBLE:PREAMBLE + len(MAGIC)] == MAGIC


def is_dicom_file(path: Path) -> bool:
    """A file that is DICOM by its first bytes (archives save them without a suffix); False if unreadable."""
    try:
        with open(path, "rb") as f:
            return is_dicom(f.read(PREAMBLE + len(MAGIC)))
    except OSError:
        return False


def decode_dicom(data: bytes, what: str, notes: list[str] | None = None) -> np.ndarray:
    """The photograph in a DICOM file's bytes; `what` names it in an error, `notes` is told what was converted."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as e:
        raise DataError(f"{what}: unreadable or truncated DICOM ({type(e).__name__}: {e})") from None
    if "PixelData" not in ds:
        kind = getattr(ds.get("SOPClassUID"), "name", None) or "no SOP class"
        raise DataError(f"{what}: a DICOM with no image in it ({kind})")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise DataError(f"{what}: a DICOM of {frames} frames (a stereo pair or a series): save one photograph per "
                        "file")
    if ds.get("PixelRepresentation", 0) != 0:
        raise DataError(f"{what}: signed DICOM pixels are no photograph's (PixelRepresentation 1)")
    try:
        arr = ds.pixel_array  # YCbCr (JPEG's) is given as RGB
    except Exception as e:  # noqa: BLE001 - each decoder plugin raises its own types
        syntax = ds.file_meta.get("TransferSyntaxUID")
        name = getattr(syntax, "name", None) or str(syntax)
        # pydicom lists each decoder and the packages it lacks on lines of their own: one line, all of them
        reason = "; ".join(line.strip() for line in str(e).splitlines() if line.strip()).replace(":;", ":")
        raise DataError(f"{what}: its DICOM pixel data ({name}) cannot be decoded here: {reason}") from None
    if notes is not None:
        notes.append(DICOM_NOTE)
    bits = int(ds.get("BitsStored") or arr.dtype.itemsize * 8)
    top = 2**bits - 1
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":  # 0 is white: shown inverted
        arr = (top - np.minimum(arr, top)).astype(arr.dtype)
        if notes is not None:
            notes.append("MONOCHROME1 inverted")
    if arr.dtype == np.uint16 and bits < 16:  # 10 or 12 bits in 16: their own full scale, not 16 bits'
        arr = np.minimum(arr, top).astype(np.float32) / top
        if notes is not None:
            notes.append(f"{bits}-bit values divided by {top}")
    return arr
