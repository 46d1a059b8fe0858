"""Generate the ingest benchmark corpus: DX-sized instances (2500x3000, 16-bit, ~15 MB each,
a few views per study) and one CT series (512x512, 16-bit). Explicit VR little endian."""
import argparse
import os

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX = "1.2.840.10008.5.1.4.1.1.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


def base(sop_class, study, series, n, patient):
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyDate = "20261122"
    ds.StudyTime = "080000"
    ds.AccessionNumber = f"ACC{patient}"
    ds.PatientName = f"Bench^Patient{patient}=测试^{patient}"
    ds.PatientID = f"BENCH{patient:05d}"
    ds.InstanceNumber = n
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--dx", type=int, default=200)
    p.add_argument("--ct", type=int, default=300)
    a = p.parse_args()
    rng = np.random.default_rng(7)
    os.makedirs(f"{a.out}/dx", exist_ok=True)
    os.makedirs(f"{a.out}/ct", exist_ok=True)
    yy, xx = np.mgrid[0:3000, 0:2500]
    dx_pixels = ((xx * 7 + yy * 3) % 4096).astype(np.uint16)
    for i in range(a.dx):
        if i % 4 == 0:
            study, series = generate_uid(), generate_uid()
        ds = base(DX, study, series, i % 4 + 1, i // 4)
        ds.Modality = "DX"
        ds.Rows, ds.Columns = 3000, 2500
        ds.ImagerPixelSpacing = [0.143, 0.143]
        noise = rng.integers(0, 64, size=dx_pixels.shape, dtype=np.uint16)
        ds.PixelData = (dx_pixels + noise).tobytes()
        ds.save_as(f"{a.out}/dx/dx{i:04d}.dcm", enforce_file_format=True)
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    yy, xx = np.mgrid[0:512, 0:512]
    for i in range(a.ct):
        ds = base(CT, study, series, i + 1, 99999)
        ds.Modality = "CT"
        ds.Rows, ds.Columns = 512, 512
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1.0
        ds.ImagePositionPatient = [0, 0, float(i)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_of_reference
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (((xx - 256) ** 2 + (yy - 256) ** 2 + i * 50) % 3000).astype(np.uint16).tobytes()
        ds.save_as(f"{a.out}/ct/ct{i:04d}.dcm", enforce_file_format=True)


if __name__ == "__main__":
    main()
