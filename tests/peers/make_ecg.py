"""A synthetic 12-lead ECG of known rhythm, for the ECG viewer's browser test.

    python make_ecg.py OUT.dcm

Sinus rhythm at 75 bpm: 500 Hz, 10 s, the R peaks at 0.4 s + k * 0.8 s (RR 800 ms), the R
wave 1.0 mV in lead II (other leads scaled; aVR negative). The device's measurements
(HR 75, PR 160, QRS 90, QT 380, QTc 424) go in the Waveform Annotation Sequence.
"""
import sys

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

FS = 500
SECONDS = 10
RR = 0.8
FIRST_R = 0.4
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
# R-wave amplitude per lead, relative to lead II
SCALE = [0.6, 1.0, 0.4, -0.8, 0.3, 0.7, -0.4, 0.3, 0.6, 1.2, 1.1, 0.9]


def beat(t):
    """One heartbeat in mV around its R peak at t = 0: P, Q, R, S and T waves."""
    g = lambda c, w, a: a * np.exp(-((t - c) ** 2) / (2 * w**2))
    return g(-0.16, 0.025, 0.12) + g(-0.025, 0.008, -0.1) + g(0.0, 0.01, 1.0) + g(0.025, 0.008, -0.25) + g(0.24, 0.045, 0.3)


def code(value, scheme, meaning):
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def main(out):
    t = np.arange(FS * SECONDS) / FS
    base = np.zeros_like(t)
    r = FIRST_R
    while r < SECONDS + 1:
        base += beat(t - r)
        r += RR
    data = np.stack([np.round(base * s * 1000) for s in SCALE], axis=1).astype("<i2")  # µV

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Li^Si=李^四"
    ds.PatientID = "ECG-SYN-75"
    ds.PatientSex = "M"
    ds.StudyDate = ds.ContentDate = "20261120"
    ds.StudyTime = ds.ContentTime = "093000"
    ds.AccessionNumber = "ECG75"
    ds.Modality = "ECG"
    ds.Manufacturer = "readhub test"
    ds.StudyDescription = "12-lead ECG (synthetic sinus 75 bpm)"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1

    group = Dataset()
    group.MultiplexGroupTimeOffset = 0
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(LEADS)
    group.NumberOfWaveformSamples = len(t)
    group.SamplingFrequency = FS
    group.MultiplexGroupLabel = "RHYTHM"
    channels = []
    for i, lead in enumerate(LEADS):
        ch = Dataset()
        ch.ChannelSourceSequence = [code(f"5.6.3-9-{i + 1}", "SCPECG", f"Lead {lead}")]
        ch.ChannelSensitivity = 1
        ch.ChannelSensitivityUnitsSequence = [code("uV", "UCUM", "microvolt")]
        ch.ChannelSensitivityCorrectionFactor = 1
        ch.ChannelBaseline = 0
        ch.ChannelSampleSkew = 0
        ch.WaveformBitsStored = 16
        ch.FilterLowFrequency = 0.05
        ch.FilterHighFrequency = 150
        ch.NotchFilterFrequency = 50
        channels.append(ch)
    group.ChannelDefinitionSequence = channels
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    group.WaveformData = data.tobytes()
    ds.WaveformSequence = [group]

    notes = []
    for key, name, value, unit in [("HR", "Ventricular Heart Rate", 75, "/min"), ("PR", "PR Interval", 160, "ms"), ("QRS", "QRS Duration", 90, "ms"),
                                   ("QT", "QT Interval", 380, "ms"), ("QTc", "QTc Interval", 424, "ms"), ("AXIS", "QRS Axis", 60, "deg")]:
        a = Dataset()
        a.ConceptNameCodeSequence = [code(key, "99READHUB", name)]
        a.NumericValue = value
        a.MeasurementUnitsCodeSequence = [code(unit, "UCUM", unit)]
        a.AnnotationGroupNumber = 0
        notes.append(a)
    text = Dataset()
    text.UnformattedTextValue = "Sinus rhythm / 窦性心律"
    text.AnnotationGroupNumber = 0
    notes.append(text)
    ds.WaveformAnnotationSequence = notes
    ds.save_as(out, enforce_file_format=True)


if __name__ == "__main__":
    main(sys.argv[1])
