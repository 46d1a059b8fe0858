"""Throughput of DICOMweb requests from N concurrent keep-alive clients for S seconds
against one readhub: requests per second and p50/p99 latency (ms).
    audit_load.py BASE_URL USER:PASS THREADS SECONDS /PATH [/PATH ...]
Each client cycles through the paths. Prints one Markdown row."""
import base64
import http.client
import statistics
import sys
import threading
import time
import urllib.parse


def main():
    base, cred, threads, secs, paths = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
    u = urllib.parse.urlsplit(base)
    headers = {"Accept": "application/dicom+json", "Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}
    lat, errors, lock = [], [0], threading.Lock()
    stop = time.perf_counter() + secs

    def client(k):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        mine, i = [], k
        while time.perf_counter() < stop:
            path = paths[i % len(paths)]
            i += 1
            h = dict(headers)
            if "/instances/" in path and not path.endswith("/metadata"):
                h["Accept"] = "multipart/related; type=\"application/dicom\"; transfer-syntax=*"
            t0 = time.perf_counter()
            conn.request("GET", path, headers=h)
            r = conn.getresponse()
            r.read()
            if r.status >= 300:
                with lock:
                    errors[0] += 1
                continue
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(0.99 * (len(lat) - 1)))] if lat else 0
    print(f"| {threads} clients | {len(lat) / wall:.0f} | {statistics.median(lat) if lat else 0:.2f} | {p99:.2f} | {errors[0]} |", flush=True)


if __name__ == "__main__":
    main()
