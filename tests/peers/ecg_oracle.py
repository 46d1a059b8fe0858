"""Independent readers and writers of ECG files, for readhub's ECG tests. Nothing here uses
readhub's code.

    python ecg_oracle.py read-philips FILE      # PyPI sierraecg: µV per lead (JSON)
    python ecg_oracle.py read-aecg FILE         # PyPI aecg: µV per lead (JSON)
    python ecg_oracle.py read-dicom FILE        # pydicom waveform_array: µV per lead (JSON)
    python ecg_oracle.py make-aecg OUT [--hr 75] [--name 张三] [--id ID] [--statement TEXT] [--scale 2.5 (µV)]
    python ecg_oracle.py make-philips OUT [--hr 75] [--id ID]
    python ecg_oracle.py make-dicom OUT --hr 75 --pr 160 --qrs 90 --qt 400 [--fs 500]
    python ecg_oracle.py make-scp OUT [--hr 75] [--id ID]   # SCP-ECG; expected µV in OUT.json
    python ecg_oracle.py neurokit FILE          # neurokit2 delineation of a DICOM ECG (JSON)

The synthetic ECGs are made of waves with compact support (half-sines and triangles), so
their intervals are known exactly: P onset to QRS onset is PR, QRS onset to offset is QRS,
QRS onset to T end is QT.
"""
import base64
import json
import sys
import uuid
import xml.etree.ElementTree as ET

import numpy as np

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
# every lead a scaled copy of one beat (lead II = 1): frontal axis atan2(aVF, I)
SCALE = {"I": 0.6, "II": 1.0, "III": 0.4, "aVR": -0.8, "aVL": 0.1, "aVF": 0.7, "V1": -0.4, "V2": 0.3, "V3": 0.6, "V4": 1.2, "V5": 1.1, "V6": 0.9}


def arg(name, default=None, cast=str):
    if name in sys.argv:
        return cast(sys.argv[sys.argv.index(name) + 1])
    return default


def synthetic(fs, seconds, hr, pr, qrs, qt):
    """Lead II in µV: P (half-sine, 100 ms, 150 µV) ending PR-60 ms... exact onsets."""
    rr = 60000.0 / hr
    t = np.arange(int(fs * seconds)) * 1000.0 / fs
    x = np.zeros_like(t)
    onset = 300.0
    while onset + qt + 50 < seconds * 1000:
        u = t - onset

        def half_sine(start, dur, amp):
            m = (u >= start) & (u <= start + dur)
            return np.where(m, amp * np.sin(np.pi * (u - start) / dur), 0.0)

        def tri(a, b, c, amp):
            up = (u >= a) & (u <= b)
            down = (u > b) & (u <= c)
            return np.where(up, amp * (u - a) / (b - a), 0.0) + np.where(down, amp * (c - u) / (c - b), 0.0)

        p_dur = min(100.0, pr - 40.0)
        q_end = qrs * 0.2
        r_end = qrs * 0.8
        x += half_sine(-pr, p_dur, 150.0)
        x += tri(0.0, q_end / 2, q_end, -100.0) + tri(q_end, (q_end + r_end) / 2, r_end, 1200.0) + tri(r_end, (r_end + qrs) / 2, qrs, -250.0)
        t_dur = min(180.0, qt - qrs - 80.0)
        x += half_sine(qt - t_dur, t_dur, 300.0)
        onset += rr
    return x


def read_philips(path):
    import sierraecg

    f = sierraecg.read_file(path)
    # the resolution (µV per unit) is in the file; read it independently
    raw = open(path, "rb").read()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = raw.decode("utf-16")
    else:
        text = raw.decode("utf-8")
    root = ET.fromstring(text.encode("utf-8").replace(b'encoding="utf-16"', b'encoding="utf-8"'))
    res = None
    for e in root.iter():
        tag = e.tag.split("}")[-1]
        if tag in ("resolution", "signalresolution") and e.text and e.text.strip():
            res = float(e.text)
            break
        if tag == "parsedwaveforms" and e.get("resolution"):
            res = float(e.get("resolution"))
    return {"sampling_frequency": f.leads[0].sampling_freq, "leads": {l.label: [int(v) * res for v in l.samples] for l in f.leads}}


def read_aecg(path):
    from lxml import etree
    from aecg.models import AnnotatedECG
    from aecg.parser import _remove_namespace

    root = etree.parse(path).getroot()
    _remove_namespace(root)
    a = AnnotatedECG.from_xml_tree(root)
    ss = a.series[0].sequence_sets[0]
    inc = ss.time_info.increment
    step = {"s": 1.0, "ms": 1e-3, "us": 1e-6}[inc.unit] * inc.value
    names = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}
    leads = {}
    for q in ss.sequences:
        code = q.code.code.replace("MDC_ECG_LEAD_", "")
        leads[names.get(code, code)] = [float(v) * 1000.0 for v in q.physical_digits]  # mV -> µV
    return {"sampling_frequency": round(1.0 / step, 3), "leads": leads}


def read_dicom(path):
    import pydicom

    ds = pydicom.dcmread(path)
    arr = ds.waveform_array(0)
    group = ds.WaveformSequence[0]
    leads = {}
    for i, ch in enumerate(group.ChannelDefinitionSequence):
        meaning = ch.ChannelSourceSequence[0].CodeMeaning
        label = meaning.replace("Lead ", "").split(" ")[0]
        unit = ch.ChannelSensitivityUnitsSequence[0].CodeValue
        factor = {"uV": 1.0, "mV": 1000.0}.get(unit, 1.0)
        leads[label] = [float(v) * factor for v in arr[:, i]]
    out = {
        "sampling_frequency": float(group.SamplingFrequency),
        "leads": leads,
        "sop_class": str(ds.SOPClassUID),
        "patient_id": str(ds.get("PatientID", "")),
        "patient_name": str(ds.get("PatientName", "")),
        "patient_sex": str(ds.get("PatientSex", "")),
        "patient_birth_date": str(ds.get("PatientBirthDate", "")),
        "study_date": str(ds.get("StudyDate", "")),
        "manufacturer": str(ds.get("Manufacturer", "")),
        "filter_low": float(group.ChannelDefinitionSequence[0].get("FilterLowFrequency", 0) or 0),
        "filter_high": float(group.ChannelDefinitionSequence[0].get("FilterHighFrequency", 0) or 0),
        "annotations": [
            {"name": a.ConceptNameCodeSequence[0].CodeMeaning, "value": float(a.NumericValue)} if "NumericValue" in a else {"text": str(a.get("UnformattedTextValue", ""))}
            for a in ds.get("WaveformAnnotationSequence", [])
        ],
    }
    return out


def make_aecg(out):
    fs, hr = 500, arg("--hr", 75.0, float)
    ii = synthetic(fs, 10, hr, 160, 90, 400)
    NS = "urn:hl7-org:v3"
    XSI = "http://www.w3.org/2001/XMLSchema-instance"
    ET.register_namespace("", NS)
    ET.register_namespace("xsi", XSI)
    q = lambda t: f"{{{NS}}}{t}"
    root = ET.Element(q("AnnotatedECG"))
    ET.SubElement(root, q("id"), root=str(uuid.uuid4()))
    ET.SubElement(root, q("code"), code="93000", codeSystem="2.16.840.1.113883.6.12")
    et = ET.SubElement(root, q("effectiveTime"))
    ET.SubElement(et, q("center"), value="20261201083000")
    comp = ET.SubElement(ET.SubElement(ET.SubElement(ET.SubElement(root, q("componentOf")), q("timepointEvent")), q("componentOf")), q("subjectAssignment"))
    subj = ET.SubElement(ET.SubElement(comp, q("subject")), q("trialSubject"))
    ET.SubElement(subj, q("id"), root="2.16.840.1.113883.3.400", extension=arg("--id", "AECG-SYN"))
    person = ET.SubElement(subj, q("subjectDemographicPerson"))
    ET.SubElement(person, q("name")).text = arg("--name", "张三")
    ET.SubElement(person, q("administrativeGenderCode"), code="M", codeSystem="2.16.840.1.113883.5.1")
    ET.SubElement(person, q("birthTime"), value="19600315")
    series = ET.SubElement(ET.SubElement(root, q("component")), q("series"))
    ET.SubElement(series, q("id"), root=str(uuid.uuid4()))
    ET.SubElement(series, q("code"), code="RHYTHM", codeSystem="2.16.840.1.113883.5.4")
    set_et = ET.SubElement(series, q("effectiveTime"))
    ET.SubElement(set_et, q("low"), value="20261201083000")
    ET.SubElement(set_et, q("high"), value="20261201083010")
    ss = ET.SubElement(ET.SubElement(series, q("component")), q("sequenceSet"))
    seq = ET.SubElement(ET.SubElement(ss, q("component")), q("sequence"))
    ET.SubElement(seq, q("code"), code="TIME_ABSOLUTE", codeSystem="2.16.840.1.113883.5.4")
    v = ET.SubElement(seq, q("value"), {f"{{{XSI}}}type": "GLIST_TS"})
    ET.SubElement(v, q("head"), value="20261201083000.000")
    ET.SubElement(v, q("increment"), value="0.002", unit="s")
    # eight acquired leads, as many carts store them (III, aVR, aVL, aVF are derived)
    for lead in ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]:
        seq = ET.SubElement(ET.SubElement(ss, q("component")), q("sequence"))
        ET.SubElement(seq, q("code"), code=f"MDC_ECG_LEAD_{lead}", codeSystem="2.16.840.1.113883.6.24")
        v = ET.SubElement(seq, q("value"), {f"{{{XSI}}}type": "SLIST_PQ"})
        scale = arg("--scale", 2.5, float)
        ET.SubElement(v, q("origin"), value="0", unit="uV")
        ET.SubElement(v, q("scale"), value=str(scale), unit="uV")
        digits = np.round(ii * SCALE[lead] / scale).astype(int)
        ET.SubElement(v, q("digits")).text = " ".join(str(d) for d in digits)
    # the representative beat (PyPI aecg requires a derived series): the first beat
    der = ET.SubElement(ET.SubElement(ET.SubElement(series, q("derivation")), q("derivedSeries")), q("component"))
    dss = ET.SubElement(der, q("sequenceSet"))
    seq = ET.SubElement(ET.SubElement(dss, q("component")), q("sequence"))
    ET.SubElement(seq, q("code"), code="TIME_RELATIVE", codeSystem="2.16.840.1.113883.5.4")
    v = ET.SubElement(seq, q("value"), {f"{{{XSI}}}type": "GLIST_PQ"})
    ET.SubElement(v, q("head"), value="0", unit="s")
    ET.SubElement(v, q("increment"), value="0.002", unit="s")
    for lead in ["I", "II"]:
        seq = ET.SubElement(ET.SubElement(dss, q("component")), q("sequence"))
        ET.SubElement(seq, q("code"), code=f"MDC_ECG_LEAD_{lead}", codeSystem="2.16.840.1.113883.6.24")
        v = ET.SubElement(seq, q("value"), {f"{{{XSI}}}type": "SLIST_PQ"})
        ET.SubElement(v, q("origin"), value="0", unit="uV")
        ET.SubElement(v, q("scale"), value="2.5", unit="uV")
        ET.SubElement(v, q("digits")).text = " ".join(str(d) for d in np.round(ii[:500] * SCALE[lead] / 2.5).astype(int))
    statement = arg("--statement")
    if statement:
        ann_set = ET.SubElement(ET.SubElement(series, q("subjectOf")), q("annotationSet"))
        ann = ET.SubElement(ET.SubElement(ann_set, q("component")), q("annotation"))
        ET.SubElement(ann, q("code"), code="MDC_ECG_INTERPRETATION_STATEMENT", codeSystem="2.16.840.1.113883.6.24")
        ET.SubElement(ann, q("value"), {f"{{{XSI}}}type": "ST"}).text = statement
        ann = ET.SubElement(ET.SubElement(ann_set, q("component")), q("annotation"))
        ET.SubElement(ann, q("code"), code="MDC_ECG_HEART_RATE", codeSystem="2.16.840.1.113883.6.24")
        ET.SubElement(ann, q("value"), {f"{{{XSI}}}type": "PQ", "value": str(round(hr)), "unit": "bpm"})
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)


def lzw_encode(data, bits=10):
    """LZW with fixed `bits`-bit codes, MSB first, the table capped at 2**bits - 2 entries
    (what Philips' XLI decoders read)."""
    max_code = (1 << bits) - 2
    table = {bytes([i]): i for i in range(256)}
    next_code = 256
    codes = []
    w = b""
    for c in data:
        wc = w + bytes([c])
        if wc in table:
            w = wc
        else:
            codes.append(table[w])
            if next_code <= max_code:
                table[wc] = next_code
                next_code += 1
            w = bytes([c])
    if w:
        codes.append(table[w])
    acc, nbits, out = 0, 0, bytearray()
    for code in codes:
        acc = (acc << bits) | code
        nbits += bits
        while nbits >= 8:
            nbits -= 8
            out.append((acc >> nbits) & 0xFF)
    if nbits:
        out.append((acc << (8 - nbits)) & 0xFF)
    return bytes(out)


def xli_encode(leads):
    """Philips XLI: per lead, second-difference deltas (+64), high bytes then low bytes, LZW."""
    out = bytearray()
    for s in leads:
        s = [int(v) for v in s]
        n = len(s)
        d = [0] * n
        d[0], d[1] = s[0], s[1]
        start = 2 * s[1] - s[0] - s[2]
        for i in range(3, n):
            d[i - 1] = 2 * s[i - 1] - s[i - 2] - s[i] + 64
        raw = bytes(((v & 0xFFFF) >> 8) for v in d) + bytes((v & 0xFF) for v in d)
        chunk = lzw_encode(raw)
        out += len(chunk).to_bytes(4, "little") + b"\0\0" + (start & 0xFFFF).to_bytes(2, "little") + chunk
    return bytes(out)


def make_philips(out):
    fs, hr = 500, arg("--hr", 75.0, float)
    ii = synthetic(fs, 10, hr, 160, 90, 400)
    res = 5.0
    codes = {l: np.round(ii * SCALE[l] / res).astype(np.int16) for l in LEADS}
    # Philips stores III, aVR, aVL, aVF as residuals of what I and II predict
    i, i2 = codes["I"].astype(int), codes["II"].astype(int)
    stored = dict(codes)
    stored["III"] = (i2 - i - codes["III"]).astype(np.int16)
    iii = codes["III"].astype(int)
    stored["aVR"] = (-codes["aVR"] - np.floor((i + i2) / 2)).astype(np.int16)
    stored["aVL"] = (np.floor((i - iii) / 2) - codes["aVL"]).astype(np.int16)
    stored["aVF"] = (np.floor((i2 + iii) / 2) - codes["aVF"]).astype(np.int16)
    compressed = arg("--compression", "XLI") == "XLI"
    if compressed:
        data = xli_encode([stored[l] for l in LEADS])
    else:
        data = b"".join(stored[l].astype("<i2").tobytes() for l in LEADS)
    root = ET.Element("restingecgdata")
    info = ET.SubElement(root, "documentinfo")
    ET.SubElement(info, "documenttype").text = "PhilipsECG"
    ET.SubElement(info, "documentversion").text = "1.04"
    acq = ET.SubElement(root, "dataacquisition", date="2026-12-01", time="08:30:00")
    ET.SubElement(acq, "machine", machineid="PW-TEST").text = "PageWriter TC30"
    sig = ET.SubElement(acq, "signalcharacteristics")
    ET.SubElement(sig, "samplingrate").text = str(fs)
    ET.SubElement(sig, "resolution").text = str(int(res))
    ET.SubElement(sig, "acquisitiontype").text = "STD-12"
    ET.SubElement(sig, "numberchannelsallocated").text = "12"
    pat = ET.SubElement(ET.SubElement(root, "patient"), "generalpatientdata")
    ET.SubElement(pat, "patientid").text = arg("--id", "PHI-SYN")
    name = ET.SubElement(pat, "name")
    ET.SubElement(name, "lastname").text = "王"
    ET.SubElement(name, "firstname").text = "五"
    ET.SubElement(pat, "sex").text = "Female"
    interp = ET.SubElement(ET.SubElement(root, "interpretations"), "interpretation")
    gm = ET.SubElement(interp, "globalmeasurements")
    ET.SubElement(gm, "heartrate").text = str(round(hr))
    st = ET.SubElement(interp, "statement")
    ET.SubElement(st, "leftstatement").text = arg("--statement", "Sinus rhythm")
    waves = ET.SubElement(ET.SubElement(root, "waveforms"), "parsedwaveforms", {
        "dataencoding": "Base64", "compression": "XLI" if compressed else "Uncompressed", "numberofleads": "12",
        "leadlabels": " ".join(LEADS), "durationperchannel": "10000", "samplespersecond": str(fs)})
    waves.text = base64.b64encode(data).decode()
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)


def scp_huffman(values):
    """The SCP-ECG default Huffman table (EN 1064 annex C), written from the standard."""
    bits = []
    for v in values:
        v = int(v)
        if v == 0:
            bits.append("0")
        elif -8 <= v <= 8:
            bits.append("1" * abs(v) + "0" + ("1" if v < 0 else "0"))
        elif -128 <= v <= 127:
            bits.append("1111111110" + format(v & 0xFF, "08b"))
        else:
            bits.append("1111111111" + format(v & 0xFFFF, "016b"))
    s = "".join(bits)
    s += "0" * (-len(s) % 8)
    return bytes(int(s[i:i + 8], 2) for i in range(0, len(s), 8))


def make_scp(out):
    """An SCP-ECG record: sections 0, 1, 2 (default Huffman table), 3 (8 leads), 6 (second
    differences, Huffman coded). The expected µV per lead go to OUT.json."""
    import struct

    fs, hr = 500, arg("--hr", 75.0, float)
    ii = synthetic(fs, 10, hr, 160, 90, 400)
    names = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    ids = [1, 2, 3, 4, 5, 6, 7, 8]
    avm_nv = 5000
    codes = {l: np.round(ii * SCALE[l] / (avm_nv / 1000)).astype(int) for l in names}

    def tag(t, value):
        return struct.pack("<BH", t, len(value)) + value

    s1 = b"".join([
        tag(0, "ZHAO".encode() + b"\0"), tag(1, "LIU".encode() + b"\0"), tag(2, arg("--id", "SCP-SYN").encode() + b"\0"),
        tag(5, struct.pack("<HBB", 1958, 7, 21)), tag(8, bytes([1])), tag(25, struct.pack("<HBB", 2026, 12, 1)),
        tag(26, bytes([8, 30, 0])), tag(27, struct.pack("<H", 5)), tag(28, struct.pack("<H", 150)), tag(255, b""),
    ])
    s2 = struct.pack("<H", 19999)
    n = len(ii)
    s3 = struct.pack("<BB", len(names), 0b100 | (len(names) << 3)) + b"".join(struct.pack("<IIB", 1, n, i) for i in ids)
    data = []
    for l in names:
        x = codes[l]
        d = [x[0], x[1]] + [x[i] - 2 * x[i - 1] + x[i - 2] for i in range(2, n)]
        data.append(scp_huffman(d))
    s6 = struct.pack("<HHBB", avm_nv, int(1e6 / fs), 2, 0) + b"".join(struct.pack("<H", len(d)) for d in data) + b"".join(data)

    def section(i, body, reserved=b"\0" * 6):
        return struct.pack("<HHIBB", 0, i, 16 + len(body), 20, 20) + reserved + body

    bodies = {1: s1, 2: s2, 3: s3, 6: s6}
    s0_len = 16 + 12 * 10
    at = 6 + s0_len + 1  # 1-based index of the first section after section 0
    pointers, rest = b"", b""
    for i in range(12):
        if i == 0:
            pointers += struct.pack("<HII", 0, s0_len, 7)
        elif i in bodies:
            sec = section(i, bodies[i])
            pointers += struct.pack("<HII", i, len(sec), at)
            rest += sec
            at += len(sec)
        else:
            pointers += struct.pack("<HII", i, 0, 0)
    s0 = section(0, pointers, b"SCPECG")
    record = s0 + rest
    blob = struct.pack("<HI", 0, 6 + len(record)) + record
    open(out, "wb").write(blob)
    json.dump({"sampling_frequency": float(fs), "leads": {l: [float(v) * avm_nv / 1000 for v in codes[l]] for l in names}}, open(out + ".json", "w"))


def make_dicom(out):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    fs = arg("--fs", 500, int)
    hr, pr, qrs, qt = arg("--hr", 75.0, float), arg("--pr", 160.0, float), arg("--qrs", 90.0, float), arg("--qt", 400.0, float)
    ii = synthetic(fs, 10, hr, pr, qrs, qt)
    data = np.stack([np.round(ii * SCALE[l]) for l in LEADS], axis=1).astype("<i2")

    def code(value, scheme, meaning):
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
        return c

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = arg("--study", generate_uid())
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Synthetic^ECG"
    ds.PatientID = arg("--id", f"SYN-{int(hr)}")
    ds.StudyDate = ds.ContentDate = arg("--date", "20261201")
    ds.StudyTime = ds.ContentTime = "083000"
    ds.Modality = "ECG"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    group = Dataset()
    group.MultiplexGroupTimeOffset = 0
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(LEADS)
    group.NumberOfWaveformSamples = data.shape[0]
    group.SamplingFrequency = fs
    chans = []
    for i, lead in enumerate(LEADS):
        ch = Dataset()
        ch.ChannelSourceSequence = [code(f"5.6.3-9-{i + 1}", "SCPECG", f"Lead {lead}")]
        ch.ChannelSensitivity = 1
        ch.ChannelSensitivityUnitsSequence = [code("uV", "UCUM", "microvolt")]
        ch.ChannelSensitivityCorrectionFactor = 1
        ch.ChannelBaseline = 0
        ch.WaveformBitsStored = 16
        chans.append(ch)
    group.ChannelDefinitionSequence = chans
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    group.WaveformData = data.tobytes()
    ds.WaveformSequence = [group]
    ds.save_as(out, enforce_file_format=True)


def neurokit(path):
    import warnings

    import neurokit2 as nk

    warnings.filterwarnings("ignore")
    d = read_dicom(path)
    fs = d["sampling_frequency"]
    sig = np.array(d["leads"]["II"]) / 1000.0
    signals, info = nk.ecg_process(sig, sampling_rate=fs)
    rpeaks = info["ECG_R_Peaks"]
    _, waves = nk.ecg_delineate(signals["ECG_Clean"], rpeaks, sampling_rate=fs, method="dwt")

    def med(a, b):
        x = np.array(waves[b], dtype=float) - np.array(waves[a], dtype=float)
        x = x[~np.isnan(x)]
        return float(np.median(x) * 1000.0 / fs) if len(x) else None

    rr = np.diff(rpeaks) * 1000.0 / fs
    return {
        "heart_rate_bpm": float(60000.0 / np.mean(rr)),
        "pr_ms": med("ECG_P_Onsets", "ECG_R_Onsets"),
        "qrs_ms": med("ECG_R_Onsets", "ECG_R_Offsets"),
        "qt_ms": med("ECG_R_Onsets", "ECG_T_Offsets"),
    }


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd.startswith("read-") or cmd == "neurokit":
        fn = {"read-philips": read_philips, "read-aecg": read_aecg, "read-dicom": read_dicom, "neurokit": neurokit}[cmd]
        json.dump(fn(sys.argv[2]), sys.stdout)
    else:
        {"make-aecg": make_aecg, "make-philips": make_philips, "make-dicom": make_dicom, "make-scp": make_scp}[cmd](sys.argv[2])
