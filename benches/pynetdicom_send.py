"""Send a directory's files over N concurrent pynetdicom associations (files split evenly)."""
import argparse
import os
import sys
import threading

from pydicom import dcmread
from pynetdicom import AE


def worker(n, files, host, port, aec, failures):
    ae = AE(ae_title=f"BENCH{n + 1}")
    ae.maximum_pdu_size = 0
    classes = {dcmread(f, stop_before_pixels=True).SOPClassUID for f in files[:1]}
    for c in classes:
        ae.add_requested_context(c, "1.2.840.10008.1.2.1")
    assoc = ae.associate(host, port, ae_title=aec)
    if not assoc.is_established:
        failures.append(f"association {n} not established")
        return
    for f in files:
        status = assoc.send_c_store(f)
        if getattr(status, "Status", None) != 0:
            failures.append(f"{f}: {status}")
    assoc.release()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--aec", required=True)
    p.add_argument("--associations", type=int, default=4)
    p.add_argument("dir")
    a = p.parse_args()
    files = sorted(os.path.join(a.dir, f) for f in os.listdir(a.dir))
    failures = []
    threads = [
        threading.Thread(target=worker, args=(n, files[n :: a.associations], a.host, a.port, a.aec, failures))
        for n in range(a.associations)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in failures:
        print(f, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
