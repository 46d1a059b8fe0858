"""A modality asking readhub for Storage Commitment (pynetdicom), for the e2e tests.

    python commitment_scu.py PORT CALLING_AE FILE [UID ...]

Stores FILE by C-STORE, then sends one N-ACTION (Storage Commitment Push Model) referencing
FILE and each extra UID (as Secondary Capture), and waits up to 20 s for the
N-EVENT-REPORT on the same association. Prints JSON: the N-ACTION status, the event type,
the committed and the failed references (with their Failure Reason).
"""
import json
import time
import sys
import threading

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

port, calling, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
extra = [a for a in sys.argv[4:] if not a.startswith("--")]
# --broken: an N-ACTION without its Transaction UID (a malformed request)
broken = "--broken" in sys.argv
stored = dcmread(path)
result = {}
done = threading.Event()


def on_report(event):
    info = event.event_information
    result["event_type"] = event.request.EventTypeID
    result["transaction"] = str(info.TransactionUID)
    result["committed"] = [str(i.ReferencedSOPInstanceUID) for i in info.get("ReferencedSOPSequence", [])]
    result["failed"] = [[str(i.ReferencedSOPInstanceUID), int(i.FailureReason)] for i in info.get("FailedSOPSequence", [])]
    done.set()
    return 0x0000, None


ae = AE(ae_title=calling)
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
ae.add_requested_context(StorageCommitmentPushModel)
ae.add_requested_context(stored.SOPClassUID, stored.file_meta.TransferSyntaxUID)
assoc = ae.associate("127.0.0.1", port, ae_title="READHUB", evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
if not assoc.is_established:
    print(json.dumps({"error": "association refused"}))
    sys.exit(1)
t0 = time.time()
log = lambda what: print(f"{time.time() - t0:6.2f}s {what}", file=sys.stderr, flush=True)
log("associated")
store = assoc.send_c_store(stored)
log("stored")
result["store_status"] = int(store.Status) if store else None
request = Dataset()
transaction = generate_uid()
if not broken:
    request.TransactionUID = transaction
refs = []
for cls, uid in [(stored.SOPClassUID, stored.SOPInstanceUID)] + [("1.2.840.10008.5.1.4.1.1.7", u) for u in extra]:
    r = Dataset()
    r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = cls, uid
    refs.append(r)
request.ReferencedSOPSequence = refs
log("sending N-ACTION")
status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
log(f"N-ACTION-RSP {status}")
result["action_status"] = int(status.Status) if status else None
result["sent_transaction"] = transaction
result["report_received"] = done.wait(5 if broken else 20)
log(f"report {result['report_received']}")
# let pynetdicom finish answering the report (N-EVENT-REPORT-RSP) before releasing: a
# release started while its reactor thread is still inside the handler can hang for ever
time.sleep(1)
result["established_after"] = assoc.is_established
if assoc.is_established:
    assoc.release()
else:
    # an association the hub ended: nothing to release (pynetdicom would wait for ever)
    assoc.abort()
print(json.dumps(result))
