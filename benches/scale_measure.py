"""Latencies for benches/scale.sh, over HTTP with keep-alive, one request at a time: QIDO by
PatientID, by a name wildcard, by a week of study dates and the plain study list; a study's
metadata; claim-next and the reader's queue page. Prints one markdown row per query:
| scale | query | p50 ms | p95 ms | results |

usage: scale_measure.py HOST:PORT SCALE_LABEL STUDIES METADATA_STUDY_UID"""
import base64
import http.client
import json
import random
import sys
import time

host, label, studies, meta_uid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
N = 200


def auth(who):
    return {"Authorization": "Basic " + base64.b64encode(who.encode()).decode(), "Accept": "application/json"}


conn = http.client.HTTPConnection(host, timeout=60)


def timed(method, path, who):
    t = time.perf_counter()
    conn.request(method, path, headers=auth(who))
    r = conn.getresponse()
    body = r.read()
    dt = (time.perf_counter() - t) * 1000
    if r.status not in (200, 204):
        raise SystemExit(f"{method} {path}: {r.status} {body[:200]!r}")
    return dt, body


def row(name, samples):
    lat = sorted(s[0] for s in samples)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    results = samples[0][1]
    print(f"| {label} | {name} | {p(0.50):.2f} | {p(0.95):.2f} | {results} |", flush=True)


def qido(query, who="admin:admin-password-1"):
    dt, body = timed("GET", f"/dicom-web/studies?{query}", who)
    return dt, len(json.loads(body)) if body else 0


rng = random.Random(7)
pid = lambda: f"P{rng.randrange(studies):08d}"
# warm the connection and the caches a little, as a hub in use is
for _ in range(20):
    qido(f"PatientID={pid()}")
row("QIDO PatientID", [qido(f"PatientID={pid()}") for _ in range(N)])
row("QIDO PatientName=BENCH^P0001234*", [qido(f"PatientName=BENCH%5EP{rng.randrange(max(1, studies // 10)):07d}*") for _ in range(N)])
def week():
    d = rng.randrange(2100)
    import datetime
    a = datetime.date(2020, 1, 1) + datetime.timedelta(days=d)
    b = a + datetime.timedelta(days=6)
    return f"StudyDate={a:%Y%m%d}-{b:%Y%m%d}&limit=100"
row("QIDO StudyDate one week (limit 100)", [qido(week()) for _ in range(N)])
row("QIDO study list (limit 100)", [qido("limit=100") for _ in range(N)])
row("study metadata (a real CT)", [(lambda r: (r[0], f"{len(json.loads(r[1]))} instances"))(timed("GET", f"/dicom-web/studies/{meta_uid}/metadata", "admin:admin-password-1")) for _ in range(N)])
readers = [f"rad{i}:reader-pw-{i}" for i in range(1, 5)]
row("claim-next", [(timed("POST", "/api/worklist/next", readers[i % 4])[0], "1 item") for i in range(N)])
row("queue page (reader)", [(lambda r: (r[0], f"{len(json.loads(r[1]))} items"))(timed("GET", "/api/worklist", readers[0])) for _ in range(N)])
