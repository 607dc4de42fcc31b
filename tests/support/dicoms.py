"""DICOM files as fundus cameras export them (Ophthalmic Photography), made from real photographs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

OP_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"  # Ophthalmic Photography 8 Bit Image Storage
OP_16BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.2"


def write_dicom(path: Path, pixels: np.ndarray, form: str = "rgb", frames: int = 1, bits: int | None = None) -> Path:
    """`pixels` (H, W, 3 RGB or H, W grey; uint8 or uint16) saved as a camera saves them. form: rgb (uncompressed),
    jpeg (baseline, stored as YCbCr 4:2:2 as cameras store it), j2k (JPEG 2000 lossless), mono2, mono1 (0 is
    white), jpeg-ls (a transfer syntax with bytes no decoder here reads), no-pixels (a report, no image)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        JPEGLSLossless,
        generate_uid,
    )

    syntax = {"jpeg": JPEGBaseline8Bit, "j2k": JPEG2000Lossless, "jpeg-ls": JPEGLSLossless}.get(form,
                                                                                                  ExplicitVRLittleEndian)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OP_16BIT if pixels.dtype == np.uint16 else OP_8BIT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.ImageLaterality = "OP", "anonymous", "R"
    if form != "no-pixels":
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
        allocated = pixels.dtype.itemsize * 8
        ds.BitsAllocated, ds.BitsStored = allocated, bits or allocated
        ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
        if pixels.ndim == 3:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = {"jpeg": "YBR_FULL_422", "j2k": "YBR_RCT", "mono1": "MONOCHROME1"}.get(
            form, "RGB" if pixels.ndim == 3 else "MONOCHROME2")
        if frames > 1:
            ds.NumberOfFrames = frames
        if form in ("jpeg", "j2k"):
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG" if form == "jpeg" else "JPEG2000",
                                         **({"quality": 95} if form == "jpeg" else {"no_jp2": True}))
            ds.PixelData = encapsulate([buffer.getvalue()] * frames)
            ds["PixelData"].VR = "OB"
        elif form == "jpeg-ls":
            ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7 not decodable here"])
            ds["PixelData"].VR = "OB"
        else:
            ds.PixelData = np.ascontiguousarray(np.stack([pixels] * frames) if frames > 1 else pixels).tobytes()
            ds["PixelData"].VR = "OW" if allocated == 16 else "OB"
    ds.save_as(path, enforce_file_format=True)
    return path
