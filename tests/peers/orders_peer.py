"""A site's HIS and modality for the orders tests: an HL7 sender over MLLP (its ACK read
back with python-hl7, an independent parser) and a Modality Worklist query with pynetdicom.

    python orders_peer.py send HOST PORT FILE ENCODING
        Sends the message in FILE (UTF-8 text, segments on lines) encoded as ENCODING
        (utf-8, gb18030) in one MLLP frame; prints JSON of the ACK: MSA-1, MSA-2, MSA-3,
        ERR-2, ERR-3.1 and ERR-8, and MSH-18.
    python orders_peer.py raw HOST PORT HEXBYTES
        Sends raw bytes (hex) as they are, then reads what comes back for 5 s.
    python orders_peer.py mwl PORT CALLING_AE CHARSET [KEY=VALUE ...]
        One Modality Worklist C-FIND; KEYs are PatientName, PatientID, AccessionNumber,
        Modality, ScheduledProcedureStepStartDate; prints JSON: the final status and the
        answers (patient name, ID, accession, Study Instance UID, modality, date, priority,
        reason, history, specific character set).
"""
import json
import socket
import sys

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"


def mllp_exchange(host, port, payload, timeout=20):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(VT + payload + FS + CR)
        buf = b""
        while not buf.endswith(FS + CR):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf.strip(VT).rstrip(CR).rstrip(FS)


def send(host, port, path, encoding):
    import hl7

    text = open(path, encoding="utf-8").read()
    message = "\r".join(line for line in text.splitlines() if line.strip()) + "\r"
    reply = mllp_exchange(host, int(port), message.encode(encoding))
    # the ACK is in the character set its MSH-18 names; python-hl7 parses the text
    msh18 = reply.split(b"\r", 1)[0].split(b"|")[17].decode("ascii") if reply.count(b"|") > 17 else ""
    decoded = reply.decode("gb18030" if "18030" in msh18 else "utf-8")
    ack = hl7.parse(decoded)
    out = {"msh18": msh18, "msa1": str(ack.segment("MSA")[1]), "msa2": str(ack.segment("MSA")[2])}
    try:
        out["msa3"] = str(ack.segment("MSA")[3])
    except (IndexError, KeyError):
        out["msa3"] = ""
    try:
        err = ack.segment("ERR")
        out["err_location"] = str(err[2])
        out["err_code"] = str(err[3][0][0])
        out["err_text"] = str(err[8])
    except KeyError:
        pass
    print(json.dumps(out, ensure_ascii=False))


def raw(host, port, hexbytes):
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(bytes.fromhex(hexbytes))
        buf = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except socket.timeout:
            pass
    print(json.dumps({"reply": buf.decode("utf-8", "replace")}))


def mwl(port, calling, charset, pairs):
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    keys = dict(p.split("=", 1) for p in pairs)
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = keys.get("PatientName", "")
    ds.PatientID = keys.get("PatientID", "")
    ds.AccessionNumber = keys.get("AccessionNumber", "")
    ds.StudyInstanceUID = ""
    ds.RequestedProcedurePriority = ""
    ds.ReasonForTheRequestedProcedure = ""
    ds.AdditionalPatientHistory = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    sps = Dataset()
    sps.Modality = keys.get("Modality", "")
    sps.ScheduledStationAETitle = ""
    sps.ScheduledProcedureStepStartDate = keys.get("ScheduledProcedureStepStartDate", "")
    sps.ScheduledProcedureStepStartTime = ""
    ds.ScheduledProcedureStepSequence = [sps]
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", int(port), ae_title="READHUB")
    if not assoc.is_established:
        print(json.dumps({"error": "association rejected"}))
        return
    answers, final = [], None
    for status, ident in assoc.send_c_find(ds, ModalityWorklistInformationFind):
        if status is None:
            break
        if status.Status in (0xFF00, 0xFF01) and ident is not None:
            item = ident.ScheduledProcedureStepSequence[0] if "ScheduledProcedureStepSequence" in ident else Dataset()
            answers.append({
                "charset": str(ident.get("SpecificCharacterSet", "")),
                "name": str(ident.get("PatientName", "")),
                "patient_id": str(ident.get("PatientID", "")),
                "accession": str(ident.get("AccessionNumber", "")),
                "study_uid": str(ident.get("StudyInstanceUID", "")),
                "priority": str(ident.get("RequestedProcedurePriority", "")),
                "reason": str(ident.get("ReasonForTheRequestedProcedure", "")),
                "history": str(ident.get("AdditionalPatientHistory", "")),
                "sex": str(ident.get("PatientSex", "")),
                "birth": str(ident.get("PatientBirthDate", "")),
                "modality": str(item.get("Modality", "")),
                "date": str(item.get("ScheduledProcedureStepStartDate", "")),
            })
        else:
            final = status.Status
    assoc.release()
    print(json.dumps({"status": final, "answers": answers}, ensure_ascii=False))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "send":
        send(*sys.argv[2:6])
    elif cmd == "raw":
        raw(*sys.argv[2:5])
    elif cmd == "mwl":
        mwl(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
