#!/usr/bin/env python3
"""Figures for the bounds of issue 11 (run by hand; numbers go to BENCHMARKS.md):

- peak RSS (VmHWM) and wall time of 8 and 32 concurrent full-size renders of one
  2500x3000 16-bit DX (a fresh hub for each, so the peak is that burst's);
- how long 200 association requests beyond `max_associations` take to be refused
  (A-ASSOCIATE-RJ, local limit exceeded) while every slot is held.

    .venv/bin/python benches/bounds.py [--readhub target/release/readhub]
"""
import argparse, os, socket, struct, subprocess, sys, tempfile, threading, time, urllib.request, base64

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

SC = "1.2.840.10008.5.1.4.1.1.7"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def start(readhub, data):
    dicom, http = free_port(), free_port()
    env = dict(os.environ, READHUB_DATA_DIR=data, READHUB_DICOM_ADDR=f"127.0.0.1:{dicom}",
               READHUB_HTTP_ADDR=f"127.0.0.1:{http}", READHUB_LOG="warn")
    p = subprocess.Popen([readhub, "serve"], env=env, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", http), 0.2).close(); break
        except OSError:
            time.sleep(0.05)
    return p, dicom, http


def hwm_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024


def dx(study):
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SC, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, study + ".1"
    ds.PatientID, ds.PatientName, ds.Modality = "BOUNDS1", "Bounds^Bench", "DX"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 3000, 2500, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.random.default_rng(1).integers(0, 4096, (3000, 2500), dtype=np.uint16)).tobytes()
    ds.file_meta = FileMetaDataset(); ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def renders(readhub, n):
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, READHUB_DATA_DIR=data)
        subprocess.run([readhub, "site", "add", "Bench", "--ae", "BENCH"], env=env, check=True, capture_output=True)
        subprocess.run([readhub, "user", "add", "rad", "--role", "reader", "--pool", "imaging", "--password-stdin"],
                       env=env, input=b"bench-pass-1\n", check=True, capture_output=True)
        p, dicom, http = start(readhub, data)
        try:
            study = generate_uid(prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=None)[:40].rstrip("."); ds = dx(study)
            ae = AE(ae_title="BENCH"); ae.add_requested_context(SC, ExplicitVRLittleEndian)
            a = ae.associate("127.0.0.1", dicom, ae_title="READHUB"); assert a.is_established
            st = a.send_c_store(ds); assert st.Status == 0, st; a.release()
            before = hwm_mib(p.pid)
            url = f"http://127.0.0.1:{http}/dicom-web/studies/{study}/series/{study}.1/instances/{ds.SOPInstanceUID}/rendered"
            auth = "Basic " + base64.b64encode(b"rad:bench-pass-1").decode()
            codes = []
            def one():
                req = urllib.request.Request(url, headers={"Accept": "image/jpeg", "Authorization": auth})
                with urllib.request.urlopen(req, timeout=600) as r:
                    r.read(); codes.append(r.status)
            t0 = time.time()
            ts = [threading.Thread(target=one) for _ in range(n)]
            [t.start() for t in ts]; [t.join() for t in ts]
            wall = time.time() - t0
            assert codes == [200] * n, codes
            return before, hwm_mib(p.pid), wall
        finally:
            p.kill(); p.wait()


def assoc_rq(calling):
    app = b"1.2.840.10008.3.1.1.1"
    v = bytes([0x10, 0]) + struct.pack(">H", len(app)) + app
    asx, ts = b"1.2.840.10008.1.1", b"1.2.840.10008.1.2"
    sub = bytes([0x30, 0]) + struct.pack(">H", len(asx)) + asx + bytes([0x40, 0]) + struct.pack(">H", len(ts)) + ts
    v += bytes([0x20, 0]) + struct.pack(">H", 4 + len(sub)) + bytes([1, 0, 0, 0]) + sub
    ui = bytes([0x51, 0, 0, 4]) + struct.pack(">I", 16384)
    v += bytes([0x50, 0]) + struct.pack(">H", len(ui)) + ui
    body = struct.pack(">HH", 1, 0) + b"READHUB".ljust(16) + calling.encode().ljust(16) + bytes(32) + v
    return struct.pack(">BBI", 1, 0, len(body)) + body


def refusals(readhub, extra=200):
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, READHUB_DATA_DIR=data)
        aes = [f"BENCH{i}" for i in range(5)]
        subprocess.run([readhub, "site", "add", "Bench"] + sum((["--ae", a] for a in aes), []), env=env, check=True, capture_output=True)
        p, dicom, _ = start(readhub, data)
        try:
            held = []
            for i in range(64):  # every slot (max_associations 64; 16 per AE title)
                ae = AE(ae_title=aes[i // 16]); ae.add_requested_context("1.2.840.10008.1.1")
                a = ae.associate("127.0.0.1", dicom, ae_title="READHUB"); assert a.is_established, i
                held.append(a)
            lat = []
            t0 = time.time()
            for _ in range(extra):
                t = time.time()
                s = socket.create_connection(("127.0.0.1", dicom)); s.sendall(assoc_rq(aes[4]))
                pdu = s.recv(10); s.close()
                assert pdu[:1] == b"\x03" and pdu[9] == 2, pdu  # A-ASSOCIATE-RJ, local limit exceeded
                lat.append(time.time() - t)
            total = time.time() - t0
            [a.release() for a in held]
            lat.sort()
            return total, lat[len(lat) // 2], lat[-1]
        finally:
            p.kill(); p.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--readhub", default="target/release/readhub")
    args = ap.parse_args()
    for n in (8, 32):
        before, peak, wall = renders(args.readhub, n)
        print(f"{n} concurrent full renders (2500x3000 16-bit DX): wall {wall:.2f} s, peak RSS {before} -> {peak} MiB")
    total, p50, worst = refusals(args.readhub)
    print(f"200 association requests beyond 64 held slots: all refused (A-ASSOCIATE-RJ local limit) in {total*1000:.0f} ms, "
          f"p50 {p50*1000:.1f} ms, max {worst*1000:.1f} ms each")
