"""A modality: pynetdicom C-STOREs files over several concurrent associations.

Each association sends every file (so the hub sees concurrent duplicates too); prints one
line per C-STORE: "assoc=N file=... status=0xXXXX". Exit code 1 if anything failed.
"""
import argparse
import sys
import threading
import time

from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts


def send(n, port, files, results):
    ae = AE(ae_title=f"PYNET{n + 1}")
    # propose each file's own transfer syntax (pynetdicom does not transcode)
    seen = set()
    for f in files:
        ds = dcmread(f, stop_before_pixels=True)
        key = (ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        if key not in seen:
            seen.add(key)
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="READHUB")
    if not assoc.is_established:
        results.append(f"assoc={n} not established")
        return
    for f in files:
        if not assoc.is_established:
            # say how it ended, so a failure can be told apart (aborted by the hub, or
            # the DIMSE timeout ran out while the hub was silent)
            results.append(f"assoc={n} file={f} not sent: association aborted={assoc.is_aborted} released={assoc.is_released}")
            continue
        ds = dcmread(f)
        t0 = time.monotonic()
        status = assoc.send_c_store(ds)
        code = getattr(status, "Status", None)
        took = time.monotonic() - t0
        if code is not None:
            results.append(f"assoc={n} file={f} status=0x{code:04X}")
        else:
            results.append(f"assoc={n} file={f} status=none after {took:.1f} s (aborted={assoc.is_aborted})")
    if assoc.is_established:
        assoc.release()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--associations", type=int, default=4)
    p.add_argument("files", nargs="+")
    a = p.parse_args()
    results = []
    threads = [threading.Thread(target=send, args=(n, a.port, a.files, results)) for n in range(a.associations)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        print(r)
    ok = sum("status=0x0000" in r for r in results) == len(a.files) * a.associations
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
