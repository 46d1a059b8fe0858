"""N concurrent GETs of one URL (a burst of full-size renders), each on its own connection.
    render_burst.py BASE_URL USER:PASS|- PATH N
Prints the wall time in seconds of the whole burst (after one warm-up request)."""
import base64
import http.client
import sys
import threading
import time
import urllib.parse


def main():
    base, cred, path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    u = urllib.parse.urlsplit(base)
    headers = {"Accept": "image/jpeg"}
    if cred != "-":
        headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
    full = u.path.rstrip("/") + path
    failures = []

    def one():
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
        c.request("GET", full, headers=headers)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            failures.append(r.status)

    one()
    threads = [threading.Thread(target=one) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    print(f"{wall:.2f}" + (f" (failed: {failures})" if failures else ""))


if __name__ == "__main__":
    main()
