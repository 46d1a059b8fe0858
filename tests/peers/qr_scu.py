"""A workstation querying and pulling from readhub with pynetdicom (Study Root), for the
e2e tests.

    python qr_scu.py find PORT CALLING_AE LEVEL [KEY=VALUE ...]
        C-FIND; prints JSON: the final status and the answers (every key asked, as text).
    python qr_scu.py get PORT CALLING_AE STUDY_UID
        C-GET of a study on the same association (storage contexts with the SCP role);
        prints JSON: the final status, the counts and the SOP Instance UIDs received.
"""
import json
import sys

from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelGet

cmd, port, calling = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ae = AE(ae_title=calling)
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30

if cmd == "find":
    level, pairs = sys.argv[4], sys.argv[5:]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    for p in pairs:
        k, v = p.split("=", 1)
        setattr(ds, k, v)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="READHUB")
    answers, final = [], None
    for status, ident in assoc.send_c_find(ds, StudyRootQueryRetrieveInformationModelFind):
        if status is None:
            break
        if status.Status in (0xFF00, 0xFF01) and ident is not None:
            answers.append({k.split("=")[0]: str(ident.get(k.split("=")[0], "")) for k in pairs})
        else:
            final = status.Status
    assoc.release()
    print(json.dumps({"status": final, "answers": answers}, ensure_ascii=False))
elif cmd == "get":
    study = sys.argv[4]
    received = []

    def on_store(event):
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    contexts = StoragePresentationContexts[:120]
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for c in contexts:
        ae.add_requested_context(c.abstract_syntax)
    roles = [build_role(c.abstract_syntax, scp_role=True) for c in contexts]
    assoc = ae.associate("127.0.0.1", port, ae_title="READHUB", ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study
    final = {}
    for status, _ in assoc.send_c_get(ds, StudyRootQueryRetrieveInformationModelGet):
        if status is None:
            break
        if status.Status != 0xFF00:
            final = {"status": status.Status, "completed": int(status.get("NumberOfCompletedSuboperations", 0)),
                     "failed": int(status.get("NumberOfFailedSuboperations", 0))}
    assoc.release()
    final["received"] = received
    print(json.dumps(final))
