"""A 15 MB DX for the time-to-first-image benchmark: the real chest film RG1_UNCR (pydicom
test data, 1841x1955, 15-bit) resampled to 2500x3000, stored as Digital X-Ray (For
Presentation), explicit VR little endian, Imager Pixel Spacing 0.143 mm.

    python make_dx.py SHARED_DATA_DIR OUT.dcm
"""
import sys

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def main(data_dir, out):
    src = pydicom.dcmread(f"{data_dir}/pydicom-data/RG1_UNCR.dcm")
    img = Image.fromarray(src.pixel_array.astype(np.int32), mode="I").resize((2500, 3000), Image.BILINEAR)
    pixels = np.asarray(img).clip(0, 32767).astype("<u2")
    ds = src
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "DX"
    ds.PatientID = "FIRST-IMAGE"
    ds.Rows, ds.Columns = pixels.shape
    ds.ImagerPixelSpacing = [0.143, 0.143]
    if "PixelSpacing" in ds:
        del ds.PixelSpacing
    ds.PixelData = pixels.tobytes()
    ds.save_as(out, enforce_file_format=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
