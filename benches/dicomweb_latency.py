"""Latency of DICOMweb requests against one server (readhub or Orthanc's DICOMweb plugin):
each request repeated R times over one keep-alive connection, p50/p95 in milliseconds.
    dicomweb_latency.py NAME BASE_URL USER:PASS|- ROUNDS LABEL=/PATH ...
Prints one Markdown table row per request; a non-2xx answer is reported, not timed."""
import base64
import http.client
import statistics
import sys
import time
import urllib.parse


def main():
    name, base, cred, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    u = urllib.parse.urlsplit(base)
    headers = {"Accept": "application/dicom+json"}
    if cred != "-":
        headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    for spec in sys.argv[5:]:
        label, path = spec.split("=/", 1)
        path = "/" + path
        h = dict(headers)
        if "/rendered" in path or "/thumbnail" in path:
            h["Accept"] = "image/jpeg"
        elif "/instances/" in path and not path.endswith("/metadata"):
            h["Accept"] = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        if "gzip" in label:
            h["Accept-Encoding"] = "gzip"  # what a browser sends
        times, status, size, hits = [], None, 0, ""
        for i in range(rounds + 2):
            t0 = time.perf_counter()
            conn.request("GET", u.path.rstrip("/") + path, headers=h)
            r = conn.getresponse()
            body = r.read()
            dt = (time.perf_counter() - t0) * 1000
            status, size = r.status, len(body)
            if status >= 300:
                break
            if i >= 2:  # two warm-up rounds
                times.append(dt)
            if i == 0 and r.getheader("Content-Type", "").startswith("application/dicom+json"):
                hits = str(body.count(b'"0020000D"'))
        if status >= 300:
            print(f"| {label} | {name} | HTTP {status} | | | |", flush=True)
            continue
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        print(f"| {label} | {name} | {statistics.median(times):.1f} | {p95:.1f} | {hits or '-'} | {size} |", flush=True)


if __name__ == "__main__":
    main()
