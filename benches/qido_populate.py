"""Fill a DICOM receiver with N small studies for the QIDO-RS benchmark: one 16x16 secondary
capture per study, generated in memory and sent over pynetdicom associations from several
processes. Patients, dates, modalities and accession numbers vary so that searches select
realistic fractions: PatientID BENCH000123, names Bench^P000123=测试^123, study dates over
2020-2026, accession A000123, modality one of CR/DX/CT/MR/ECG-like OT (ModalitiesInStudy)."""
import argparse
import multiprocessing as mp
import sys

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

SC = "1.2.840.10008.5.1.4.1.1.7"
MODALITIES = ["CR", "DX", "CT", "MR", "OT"]


def dataset(i):
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    day = i % 2500
    ds.StudyDate = f"{2020 + day // 360}{1 + (day % 360) // 30:02d}{1 + day % 30:02d}"
    ds.StudyTime = "093000"
    ds.AccessionNumber = f"A{i:06d}"
    ds.PatientName = f"Bench^P{i:06d}=测试^{i}"
    ds.PatientID = f"BENCH{i:06d}"
    ds.PatientSex = "MF"[i % 2]
    ds.Modality = MODALITIES[i % len(MODALITIES)]
    ds.StudyDescription = "Chest PA" if i % 3 else "Hand"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.full((16, 16), i % 256, dtype=np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def worker(args):
    n, start, stop, host, port, aec, aet = args
    ae = AE(ae_title=aet)
    # a receiver busy committing may take a while to answer an association request
    ae.acse_timeout = 120
    ae.dimse_timeout = 120
    ae.add_requested_context(SC, ExplicitVRLittleEndian)
    failures = 0
    i = start
    while i < stop:
        assoc = ae.associate(host, port, ae_title=aec)
        if not assoc.is_established:
            return f"worker {n}: association refused"
        # a fresh association every 1000 studies, as a modality would over a day
        for j in range(i, min(i + 1000, stop)):
            status = assoc.send_c_store(dataset(j))
            if getattr(status, "Status", None) != 0:
                failures += 1
        assoc.release()
        i = min(i + 1000, stop)
    return f"worker {n}: {stop - start - failures} stored, {failures} failed"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--aec", required=True)
    p.add_argument("--aet", default="BENCH")
    p.add_argument("--studies", type=int, default=100_000)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--start", type=int, default=0, help="first study index (to top up a store)")
    a = p.parse_args()
    step = (a.studies + a.processes - 1) // a.processes
    jobs = [(n, a.start + n * step, a.start + min((n + 1) * step, a.studies), "127.0.0.1", a.port, a.aec, a.aet)
            for n in range(a.processes)]
    with mp.Pool(a.processes) as pool:
        for line in pool.map(worker, jobs):
            print(line)
            if "failed" in line and not line.endswith(" 0 failed"):
                sys.exit(1)


if __name__ == "__main__":
    main()
