"""A standard DICOMweb client (dicomweb-client, PyPI) against readhub: STOW-RS, QIDO-RS at
every level, WADO-RS instance/study/metadata/frames/rendered. Exit 0 only if every
check passes; each check prints one line."""
import sys

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient


def check(name, cond, detail=""):
    print(("ok   " if cond else "FAIL ") + name + (f": {detail}" if detail and not cond else ""))
    if not cond:
        check.failed = True


check.failed = False


def main():
    base, user, password, path = sys.argv[1:5]
    session = requests.Session()
    session.auth = (user, password)
    client = DICOMwebClient(url=f"{base}/dicom-web", session=session)
    ds = pydicom.dcmread(path)
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID

    resp = client.store_instances([ds])  # the response, as a pydicom Dataset
    refs = resp.get("ReferencedSOPSequence", [])
    check(
        "STOW-RS stores the instance",
        len(refs) == 1 and refs[0].ReferencedSOPInstanceUID == sop and "FailedSOPSequence" not in resp,
        resp,
    )

    studies = client.search_for_studies(search_filters={"PatientID": ds.PatientID})
    check("QIDO studies by PatientID", len(studies) == 1 and studies[0]["0020000D"]["Value"][0] == study, studies)
    found = client.search_for_series(study)
    check("QIDO series of the study", len(found) == 1 and found[0]["0020000E"]["Value"][0] == series, found)
    insts = client.search_for_instances(study, series)
    check("QIDO instances of the series", len(insts) == 1 and insts[0]["00080018"]["Value"][0] == sop, insts)

    got = client.retrieve_instance(study, series, sop)
    check("WADO-RS instance", got.SOPInstanceUID == sop and got.PixelData == ds.PixelData)
    whole = client.retrieve_study(study)
    check("WADO-RS study", len(whole) == 1 and whole[0].SOPInstanceUID == sop)
    meta = client.retrieve_study_metadata(study)
    check("WADO-RS metadata", len(meta) == 1 and meta[0]["00080018"]["Value"][0] == sop, meta)
    loaded = pydicom.dataset.Dataset.from_json(meta[0], bulk_data_uri_handler=lambda tag, vr, uri: b"")
    check("metadata parses as a DICOM JSON model", loaded.SOPInstanceUID == sop)
    frames = client.retrieve_instance_frames(study, series, sop, frame_numbers=[1])
    check("WADO-RS frame 1 (native pixels)", len(frames) == 1 and frames[0] == ds.PixelData, len(frames[0]) if frames else None)
    png = client.retrieve_instance_rendered(study, series, sop, media_types=("image/png",))
    check("WADO-RS rendered PNG", png[:8] == b"\x89PNG\r\n\x1a\n")
    jpeg = client.retrieve_instance_rendered(study, series, sop)
    check("WADO-RS rendered JPEG (default)", jpeg[:2] == b"\xff\xd8")
    sys.exit(1 if check.failed else 0)


if __name__ == "__main__":
    main()
