"""Independent check of readhub's rendered frames: decode each sample with pydicom (plus
pylibjpeg's libjpeg and openjpeg plugins for the compressed syntaxes), apply the display
pipeline of PS3.3 C.11 / PS3.14 with pydicom's own LUT functions, and compare with the PNG
readhub renders for the same frame.

    render_oracle.py BASE_URL USER PASSWORD FILE:FRAME[:lossy] ...

The reference pipeline:
  - MONOCHROME1/2: Modality LUT (rescale or LUT, pydicom's apply_modality_lut); then the
    VOI LUT Sequence (pydicom's apply_voi_lut) or the first window (the linear function of
    PS3.3 C.11.2.1.2.1, to 0..255), or, with neither, the frame's min..max; MONOCHROME1
    displayed inverted (and Presentation LUT Shape INVERSE on MONOCHROME2);
  - PALETTE COLOR: pydicom's apply_color_lut, scaled to 8 bits;
  - RGB / YBR_*: pydicom's decoded RGB (it converts YBR), 16-bit scaled to 8 bits.

Tolerance (grey levels of 255): mean absolute difference <= 1.0 and 99th percentile <= 3
for lossless data (rounding of the window only); for lossy JPEG / JPEG 2000, where two
decoders may differ in the last bits, mean <= 3.0 and 99th percentile <= 16.
Prints one JSON line per sample; exits 1 if any is out of tolerance.
"""
import base64
import io
import json
import sys
import urllib.request

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut


def fetch(base, auth, path):
    req = urllib.request.Request(base + path, headers={"Accept": "image/png", "Authorization": auth})
    with urllib.request.urlopen(req) as r:
        return np.asarray(Image.open(io.BytesIO(r.read())))


def linear_window(x, center, width):
    # PS3.3 C.11.2.1.2.1, output range 0..255
    c, w = center - 0.5, width - 1.0
    y = ((x - c) / w + 0.5) * 255.0
    return np.clip(y, 0, 255)


def first(v):
    return float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v)


def reference(ds, frame):
    arr = ds.pixel_array
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if nframes > 1:
        arr = arr[frame - 1]
    pi = ds.PhotometricInterpretation.strip()
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        x = apply_modality_lut(arr, ds).astype(np.float64)
        if "VOILUTSequence" in ds:
            lut = ds.VOILUTSequence[0]
            bits = int(lut.LUTDescriptor[2])
            y = apply_voi_lut(arr, ds, index=0).astype(np.float64) * 255.0 / (2**bits - 1)
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            y = linear_window(x, first(ds.WindowCenter), first(ds.WindowWidth))
        else:
            lo, hi = x.min(), x.max()
            y = (x - lo) * 255.0 / max(hi - lo, 1.0)
        inverse = ds.get("PresentationLUTShape", "").strip() == "INVERSE"
        if pi == "MONOCHROME1" or inverse:
            y = 255.0 - y
        return y
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds).astype(np.float64)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return rgb * 255.0 / (2**bits - 1)
    rgb = arr.astype(np.float64)  # pydicom converts YBR_* to RGB when decoding
    if int(ds.BitsAllocated) > 8:
        rgb = rgb * 255.0 / (2 ** int(ds.BitsStored) - 1)
    return rgb


def main():
    base, user, password = sys.argv[1:4]
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    failed = 0
    for spec in sys.argv[4:]:
        parts = spec.split(":")
        path, frame, lossy = parts[0], int(parts[1]), len(parts) > 2 and parts[2] == "lossy"
        ds = pydicom.dcmread(path)
        want = reference(ds, frame)
        url = (f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
               f"/instances/{ds.SOPInstanceUID}/frames/{frame}/rendered")
        got = fetch(base, auth, url).astype(np.float64)
        if got.ndim == 3 and want.ndim == 2:
            got = got[..., :3].mean(axis=2)
        if got.ndim == 3:
            got = got[..., :3]
        result = {"file": path, "frame": frame, "photometric": ds.PhotometricInterpretation,
                  "transfer_syntax": str(ds.file_meta.TransferSyntaxUID)}
        if got.shape != want.shape:
            result.update(ok=False, why=f"shape {got.shape} != {want.shape}")
        else:
            diff = np.abs(got - np.rint(want))
            mean, p99 = float(diff.mean()), float(np.percentile(diff, 99))
            lim = (3.0, 16.0) if lossy else (1.0, 3.0)
            result.update(mean_abs_diff=round(mean, 3), p99_abs_diff=p99, limit=lim,
                          ok=bool(mean <= lim[0] and p99 <= lim[1]))
        failed += not result["ok"]
        print(json.dumps(result), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
