"""Mixed load for scripts/cluster.sh, through the load balancer: modalities of several sites
push studies (CT series, MR series, CR films) over DICOM, readers claim-next, report and sign,
a browser-like client runs QIDO and WADO. After the load: every acknowledged instance must
be in the index and retrievable (WADO-RS, its bytes a Part-10 file), and every study read
exactly once.

usage: cluster_load.py --dicom HOST:PORT --http URL --seconds S --readers N --admin USER:PW
"""
import argparse
import base64
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

CT, MR, CR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.1"
PUSHERS = [("CTSITE1", CT, "CT", 24), ("MRSITE2", MR, "MR", 12), ("CRSITE3", CR, "CR", 1), ("CRSITE4", CR, "CR", 1)]

lock = threading.Lock()
acked = {}  # study uid -> set of acknowledged SOP instance uids
signed = {}  # study uid -> times signed
errors = []
stats = {"associations_failed": 0, "qido": 0, "wado": 0, "claims": 0}


def image(study, series, sop, cls, modality, n, patient):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = cls, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName = patient, f"Load^{patient}"
    ds.Modality, ds.InstanceNumber, ds.SeriesNumber = modality, n + 1, 1
    ds.StudyDate = time.strftime("%Y%m%d")
    size = 512 if modality == "CR" else 128
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.random.default_rng(n).integers(0, 4095, (size, size), dtype=np.uint16)).tobytes()
    return ds


def push(ae_title, cls, modality, per_study, dicom, until):
    host, port = dicom.split(":")
    k = 0
    while time.time() < until:
        k += 1
        study, series = generate_uid(), generate_uid()
        patient = f"{ae_title}-{k}"
        pending = [(generate_uid(), n) for n in range(per_study)]
        tries = 0
        while pending and tries < 10:
            tries += 1
            ae = AE(ae_title=ae_title)
            ae.add_requested_context(cls, ExplicitVRLittleEndian)
            assoc = ae.associate(host, int(port), ae_title="READHUB")
            if not assoc.is_established:
                with lock:
                    stats["associations_failed"] += 1
                time.sleep(0.5)
                continue
            for sop, n in list(pending):
                try:
                    status = assoc.send_c_store(image(study, series, sop, cls, modality, n, patient))
                except Exception as e:  # the node died under us: the rest goes to another
                    errors.append(f"{ae_title}: {e}")
                    break
                if getattr(status, "Status", None) == 0:
                    with lock:
                        acked.setdefault(study, set()).add(sop)
                    pending.remove((sop, n))
                else:
                    break
            if assoc.is_established:
                assoc.release()
        time.sleep(random.uniform(0.1, 0.4))


def call(http, who, method, path, body=None):
    req = urllib.request.Request(http + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", "Basic " + base64.b64encode(who.encode()).decode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return r.status, (json.loads(data) if data and r.headers.get_content_type().endswith("json") else data)
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:  # a node killed mid-request: the balancer sends the retry elsewhere
        return 0, str(e)


def retrievable(http, who, study, series, sop):
    """WADO-RS of one instance answers its Part-10 bytes (503, "not in the shared store yet",
    is asked again for a minute: the node holding it in its receive buffer may be restarting)."""
    url = f"{http}/dicom-web/studies/{study}/series/{series}/instances/{sop}"
    until = time.time() + 60
    while True:
        req = urllib.request.Request(url)
        req.add_header("Authorization", "Basic " + base64.b64encode(who.encode()).decode())
        req.add_header("Accept", "application/dicom; transfer-syntax=*")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                data = r.read()
                return r.status == 200 and data[128:132] == b"DICM"
        except Exception:
            if time.time() > until:
                return False
            time.sleep(1)


def mine(who, http, me):
    """An item this reader holds a claim on (a claim whose answer a killed node never sent:
    the viewer lists it as the reader's own, and so does this reader)."""
    s, queue = call(http, who, "GET", "/api/worklist")
    if s == 200:
        for item in queue:
            if item["state"] == "claimed" and item.get("claimed_by") == me:
                return item
    return None


def read(who, http, until):
    me = None
    while me is None and time.time() < until:
        s, v = call(http, who, "GET", "/api/me")
        me = v.get("id") if s == 200 else None
    while time.time() < until:
        item = mine(who, http, me)
        s = 200
        if item is None:
            s, item = call(http, who, "POST", "/api/worklist/next")
        if s == 204 or s == 0:
            time.sleep(0.3)
            continue
        if s != 200:
            errors.append(f"claim-next {s} {item!r:.200}")
            time.sleep(0.3)
            continue
        with lock:
            stats["claims"] += 1
        iid, study = item["id"], item["study_instance_uid"]
        for _ in range(5):
            s1, _ = call(http, who, "PUT", f"/api/worklist/{iid}/report", {"findings": "负载测试", "impression": "未见异常"})
            s2, body = call(http, who, "POST", f"/api/worklist/{iid}/report/sign")
            if s2 == 200:
                with lock:
                    signed[study] = signed.get(study, 0) + 1
                break
            if s2 == 409 and b"final" in (body if isinstance(body, bytes) else b""):
                break
            time.sleep(0.5)


def browse(who, http, until):
    while time.time() < until:
        s, studies = call(http, who, "GET", "/dicom-web/studies?limit=20")
        with lock:
            stats["qido"] += 1
        if s == 200 and studies:
            uid = random.choice(studies)["0020000D"]["Value"][0]
            s, _ = call(http, who, "GET", f"/dicom-web/studies/{uid}/metadata")
            with lock:
                stats["wado"] += 1
        time.sleep(0.2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dicom", required=True)
    p.add_argument("--http", required=True)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--readers", type=int, default=3)
    p.add_argument("--admin", required=True)
    a = p.parse_args()
    start = time.time()
    push_until = start + a.seconds
    threads = [threading.Thread(target=push, args=(ae, cls, mod, n, a.dicom, push_until)) for ae, cls, mod, n in PUSHERS]
    threads.append(threading.Thread(target=browse, args=(a.admin, a.http, push_until)))
    # readers go on after the pushers stop, until every acknowledged study is read
    read_until = push_until + 180
    readers = [threading.Thread(target=read, args=(f"rad{i}:reader-pw-{i}", a.http, read_until), daemon=True) for i in range(1, a.readers + 1)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join()
    pushed_for = time.time() - start
    while time.time() < read_until:
        with lock:
            if all(signed.get(s, 0) >= 1 for s in acked):
                break
        time.sleep(1)
    # the checks: nothing acknowledged lost, every study read once
    lost, unretrievable = [], []
    for study, sops in acked.items():
        s, inst = call(a.http, a.admin, "GET", f"/dicom-web/studies/{study}/instances")
        held = {i["00080018"]["Value"][0] for i in inst} if s == 200 else set()
        lost += [f"{study}/{sop}" for sop in sops - held]
        for i in inst if s == 200 else []:
            sop = i["00080018"]["Value"][0]
            if sop in sops and not retrievable(a.http, a.admin, study, i["0020000E"]["Value"][0], sop):
                unretrievable.append(f"{study}/{sop}")
    unread = [s for s in acked if signed.get(s, 0) == 0]
    twice = [s for s, n in signed.items() if n > 1]
    result = {
        "pushed_seconds": round(pushed_for, 1),
        "studies_acknowledged": len(acked),
        "instances_acknowledged": sum(len(v) for v in acked.values()),
        "instances_lost": len(lost),
        "instances_not_retrievable": len(unretrievable),
        "studies_unread": len(unread),
        "studies_read_twice": len(twice),
        "claims": stats["claims"],
        "qido": stats["qido"],
        "metadata": stats["wado"],
        "associations_refused_or_failed": stats["associations_failed"],
        "errors_seen": len(errors),
        "elapsed_seconds": round(time.time() - start, 1),
    }
    print(json.dumps(result, indent=1))
    for e in errors[:10]:
        print("  seen:", e, file=sys.stderr)
    if lost or unretrievable or unread or twice:
        print("FAILED: lost", lost[:5], "not retrievable", unretrievable[:5], "unread", unread[:5], "twice", twice[:5], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
