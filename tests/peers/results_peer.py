"""A site's systems receiving readhub's results, for the e2e tests: an HL7 MLLP listener
(its HIS) and a FHIR server, both on ephemeral loopback ports.

    python results_peer.py OUTDIR

Writes OUTDIR/ports.json ({"mllp": PORT, "fhir": PORT}) once listening. Every HL7 message is
parsed with python-hl7 (an independent parser), answered AA, and appended to
OUTDIR/hl7.jsonl as its key fields; every DiagnosticReport PUT to /fhir/DiagnosticReport/ID
is validated with fhir.resources (R4B's DiagnosticReport, which R4's matches), answered 201
(or 422 with the validation error, so readhub retries), and appended to OUTDIR/fhir.jsonl.
Runs until killed.
"""
import base64
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hl7
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

OUT = sys.argv[1]
VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
lock = threading.Lock()


def append(name, obj):
    with lock, open(os.path.join(OUT, name), "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, ensure_ascii=False) + "\n")


def field(msg, seg, n, default=""):
    try:
        return str(msg.segment(seg)[n])
    except (KeyError, IndexError):
        return default


def serve_mllp(sock):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=mllp_conn, args=(conn,), daemon=True).start()


def mllp_conn(conn):
    buf = b""
    with conn:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
            while FS + CR in buf:
                frame, buf = buf.split(FS + CR, 1)
                raw = frame.lstrip(VT)
                text = raw.decode("utf-8")
                msg = hl7.parse(text)
                obx = [{"type": str(s[2]), "id": str(s[3]), "value": str(s[5]), "status": str(s[11])} for s in msg.segments("OBX")]
                append("hl7.jsonl", {
                    "type": field(msg, "MSH", 9), "charset": field(msg, "MSH", 18), "control": field(msg, "MSH", 10),
                    "pid3": field(msg, "PID", 3), "pid5": field(msg, "PID", 5), "orc1": field(msg, "ORC", 1),
                    "placer": field(msg, "ORC", 2), "filler": field(msg, "ORC", 3), "accession": field(msg, "OBR", 18),
                    "obr25": field(msg, "OBR", 25), "obr32": field(msg, "OBR", 32), "obr33": field(msg, "OBR", 33), "obx": obx,
                })
                ack = "MSH|^~\\&|HIS|T1|READHUB|HUB|20261202||ACK^R01^ACK|A1|P|2.5.1\rMSA|AA|%s\r" % field(msg, "MSH", 10)
                conn.sendall(VT + ack.encode() + FS + CR)


class Fhir(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            doc = json.loads(body)
            DiagnosticReport.model_validate(doc)
        except Exception as e:  # noqa: BLE001 - any validation error is the answer
            append("fhir.jsonl", {"path": self.path, "valid": False, "error": str(e)[:2000]})
            self.send_response(422)
            self.end_headers()
            return
        pdf = next((f for f in doc.get("presentedForm", []) if f.get("contentType") == "application/pdf"), {})
        append("fhir.jsonl", {
            "path": self.path, "valid": True, "content_type": self.headers.get("content-type"), "id": doc.get("id"),
            "status": doc.get("status"), "conclusion": doc.get("conclusion"), "subject": doc.get("subject"),
            "basedOn": doc.get("basedOn"), "imagingStudy": doc.get("imagingStudy"),
            "pdf_head": base64.b64decode(pdf.get("data", ""))[:5].decode("latin-1"),
        })
        self.send_response(201)
        self.send_header("content-type", "application/fhir+json")
        self.end_headers()
        self.wfile.write(body)


mllp = socket.socket()
mllp.bind(("127.0.0.1", 0))
mllp.listen(8)
http = ThreadingHTTPServer(("127.0.0.1", 0), Fhir)
threading.Thread(target=serve_mllp, args=(mllp,), daemon=True).start()
with open(os.path.join(OUT, "ports.tmp"), "w") as f:
    json.dump({"mllp": mllp.getsockname()[1], "fhir": http.server_address[1]}, f)
os.rename(os.path.join(OUT, "ports.tmp"), os.path.join(OUT, "ports.json"))
http.serve_forever()
