//! Philips Sierra ECG XML (`restingecgdata`, document versions 1.03, 1.04, 1.04.01, 1.04.02:
//! PageWriter, TraceMasterVue, HeartStart). The waveforms are 16-bit samples, Base64, either
//! plain (lead after lead) or XLI-compressed ([`xli`]: LZW with 10-bit codes, then a
//! second-difference predictor). In XLI files, leads III, aVR, aVL and aVF are stored as
//! residuals from I and II and are rebuilt here, as Philips' own readers do. Samples are in
//! units of the signal resolution (µV per unit, usually 5).

use base64::Engine as _;
use roxmltree::Node;

use crate::record::{digits, lead_label, Device, DeviceMeasurement, EcgRecord, Filters, Lead, MeasureKind, Patient, Sex, SourceFormat};
use crate::xml::{self, attr, child, find, number, path, text};
use crate::FormatError;

const F: SourceFormat = SourceFormat::PhilipsSierraXml;

fn bad(reason: impl Into<String>) -> FormatError {
    FormatError::malformed(F, reason)
}

const VERSIONS: [&str; 4] = ["1.03", "1.04", "1.04.01", "1.04.02"];

pub fn read(bytes: &[u8]) -> Result<EcgRecord, FormatError> {
    let text_ = xml::decode_text(bytes).map_err(bad)?;
    let doc = xml::parse(&text_).map_err(bad)?;
    let root = doc.root_element();
    if root.tag_name().name() != "restingecgdata" {
        return Err(bad(format!("the root element is {}, not restingecgdata", root.tag_name().name())));
    }
    let info = child(root, "documentinfo").ok_or_else(|| bad("documentinfo is missing"))?;
    let doc_type = child(info, "documenttype").and_then(text).unwrap_or_default();
    let version = child(info, "documentversion").and_then(text).unwrap_or_default();
    // the versions Philips' own readers and sierraecg know; another 1.x is read the same way
    // (its waveforms and measurements have kept their places), anything else is refused
    let known = VERSIONS.contains(&version.as_str()) || version.starts_with("1.");
    if !["SierraECG", "PhilipsECG"].contains(&doc_type.as_str()) || !known {
        return Err(FormatError::Unsupported {
            format: F,
            reason: format!("document type {doc_type:?} version {version:?}: readhub reads SierraECG/PhilipsECG {}", VERSIONS.join(", ")),
        });
    }
    let acq = child(root, "dataacquisition").ok_or_else(|| bad("dataacquisition is missing"))?;
    let sig = child(acq, "signalcharacteristics").ok_or_else(|| bad("signalcharacteristics is missing"))?;
    let waves = find(root, "parsedwaveforms").ok_or_else(|| bad("parsedwaveforms is missing: the file holds no waveforms"))?;

    let fs = number(child(sig, "samplingrate").and_then(text))
        .or_else(|| number(attr(waves, "samplespersecond")))
        .ok_or_else(|| bad("the sampling rate (signalcharacteristics/samplingrate) is missing"))?;
    let resolution = number(child(sig, "resolution").and_then(text))
        .or_else(|| number(child(sig, "signalresolution").and_then(text)))
        .or_else(|| number(attr(waves, "resolution")))
        .ok_or_else(|| bad("the signal resolution (µV per unit) is missing"))?;
    let labels = labels(sig, waves)?;
    let encoding = attr(waves, "dataencoding").unwrap_or_default();
    if encoding != "Base64" {
        return Err(FormatError::Unsupported { format: F, reason: format!("waveform data encoding {encoding:?} (readhub reads Base64)") });
    }
    let b64: String = text(waves).unwrap_or_default().chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let data = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| bad(format!("the waveform Base64 is broken: {e}")))?;
    let compression = attr(waves, "compressmethod").or_else(|| attr(waves, "compression")).unwrap_or_else(|| "Uncompressed".into());
    let mut raw: Vec<Vec<i32>> = match compression.as_str() {
        "XLI" => xli::decode(&data, labels.len()).map_err(|e| bad(format!("XLI waveform data: {e}")))?,
        "Uncompressed" => {
            let duration = number(attr(waves, "durationperchannel")).ok_or_else(|| bad("parsedwaveforms has no durationperchannel"))?;
            let n = (duration * fs / 1000.0) as usize;
            if n == 0 || n > crate::record::MAX_SAMPLES {
                return Err(bad(format!("{n} samples per lead")));
            }
            let samples: Vec<i32> = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i32).collect();
            if samples.len() < n * labels.len() {
                return Err(bad(format!("{} samples for {} leads of {n}", samples.len(), labels.len())));
            }
            samples.chunks(n).take(labels.len()).map(|c| c.to_vec()).collect()
        }
        other => return Err(FormatError::Unsupported { format: F, reason: format!("waveform compression {other:?} (readhub reads XLI and uncompressed)") }),
    };
    if raw.len() < labels.len() {
        return Err(bad(format!("{} leads of data for {} lead labels", raw.len(), labels.len())));
    }
    raw.truncate(labels.len());
    rebuild_limb_leads(&mut raw);
    let leads = labels
        .iter()
        .zip(raw)
        .map(|(l, codes)| Lead { label: lead_label(l), codes, scale_uv: resolution, offset_uv: 0.0 })
        .collect();

    let interpretation = find(root, "interpretation");
    let mut record = EcgRecord {
        format: F,
        patient: patient(root),
        acquired_at: match (attr(acq, "date"), attr(acq, "time")) {
            (Some(d), t) => Some(format!("{}{}", digits(&d), t.map(|t| digits(&t)).unwrap_or_default())),
            _ => None,
        },
        accession_number: path(root, &["orderinfo", "ordernumber"]).and_then(text),
        device: Device {
            manufacturer: Some("Philips".into()),
            model: child(acq, "machine").and_then(text),
            serial: child(acq, "machine").and_then(|m| attr(m, "machineid")),
            software: child(acq, "machine").and_then(|m| attr(m, "detaildescription")),
            institution: path(acq, &["acquirer", "institutionname"]).and_then(text),
        },
        sampling_hz: fs,
        leads,
        filters: filters(root, sig, waves),
        measurements: interpretation.map(measurements).unwrap_or_default(),
        statements: interpretation.map(statements).unwrap_or_default(),
    };
    crate::record::derive_limb_leads(&mut record.leads);
    record.validate()
}

fn labels(sig: Node<'_, '_>, waves: Node<'_, '_>) -> Result<Vec<String>, FormatError> {
    if let Some(l) = attr(waves, "leadlabels") {
        let n = number(attr(waves, "numberofleads")).map_or(usize::MAX, |n| n as usize);
        let labels: Vec<String> = l.split_whitespace().take(n).map(str::to_string).collect();
        if labels.is_empty() || labels.len() > crate::record::MAX_LEADS {
            return Err(bad(format!("{} lead labels", labels.len())));
        }
        return Ok(labels);
    }
    let count = number(child(sig, "numberchannelsallocated").and_then(text)).ok_or_else(|| bad("neither leadlabels nor numberchannelsallocated"))? as usize;
    if count == 0 || count > crate::record::MAX_LEADS {
        return Err(bad(format!("{count} channels allocated")));
    }
    let kind = child(sig, "acquisitiontype").and_then(text).unwrap_or_default();
    const STD: [&str; 12] = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];
    Ok((0..count)
        .map(|i| if ["STD-12", "10-WIRE"].contains(&kind.as_str()) && i < 12 { STD[i].to_string() } else { format!("Channel {}", i + 1) })
        .collect())
}

/// Leads III, aVR, aVL, aVF are stored as the difference from what I and II predict.
fn rebuild_limb_leads(leads: &mut [Vec<i32>]) {
    if leads.len() < 6 {
        return;
    }
    let n = leads.iter().take(6).map(Vec::len).min().unwrap_or(0);
    let wrap = |v: i32| v as i16 as i32;
    for k in 0..n {
        let (i, ii) = (leads[0][k], leads[1][k]);
        let iii = wrap(ii - i - leads[2][k]);
        leads[2][k] = iii;
        leads[3][k] = wrap(-leads[3][k] - wrap(i + ii).div_euclid(2));
        leads[4][k] = wrap(wrap(i - iii).div_euclid(2) - leads[4][k]);
        leads[5][k] = wrap(wrap(ii + iii).div_euclid(2) - leads[5][k]);
    }
}

fn patient(root: Node<'_, '_>) -> Patient {
    let Some(p) = path(root, &["patient", "generalpatientdata"]) else {
        return Patient::default();
    };
    let last = path(p, &["name", "lastname"]).and_then(text);
    let first = path(p, &["name", "firstname"]).and_then(text);
    Patient {
        id: child(p, "patientid").and_then(text),
        name: match (last, first) {
            (None, None) => None,
            (l, f) => Some(format!("{}^{}", l.unwrap_or_default(), f.unwrap_or_default()).trim_end_matches('^').to_string()),
        },
        sex: child(p, "sex").and_then(text).and_then(|s| Sex::from_text(&s)),
        birth_date: path(p, &["age", "dateofbirth"]).and_then(text).map(|d| digits(&d)).filter(|d| d.len() == 8),
    }
}

fn filters(root: Node<'_, '_>, sig: Node<'_, '_>, waves: Node<'_, '_>) -> Filters {
    let bw = path(root, &["reportinfo", "reportbandwidth"]);
    let from_bw = |name: &str| bw.and_then(|b| child(b, name)).and_then(text).and_then(|t| t.parse::<f64>().ok());
    Filters {
        low_hz: from_bw("highpassfiltersetting").or_else(|| number(child(sig, "hipass").and_then(text))).or_else(|| number(attr(waves, "hipass"))),
        high_hz: from_bw("lowpassfiltersetting").or_else(|| number(child(sig, "lowpass").and_then(text))).or_else(|| number(attr(waves, "lowpass"))),
        notch_hz: from_bw("notchfiltersetting").or_else(|| number(child(sig, "acsetting").and_then(text))).filter(|n| *n > 0.0),
    }
}

fn measurements(interp: Node<'_, '_>) -> Vec<DeviceMeasurement> {
    let Some(m) = child(interp, "globalmeasurements").or_else(|| child(interp, "interpretationmeasurements")) else {
        return Vec::new();
    };
    const NAMES: [(&str, MeasureKind); 15] = [
        ("heartrate", MeasureKind::HeartRate),
        ("rrint", MeasureKind::Rr),
        ("print", MeasureKind::Pr),
        ("meanprint", MeasureKind::Pr),
        ("pdur", MeasureKind::PDuration),
        ("qrsdur", MeasureKind::Qrs),
        ("meanqrsdur", MeasureKind::Qrs),
        ("qtint", MeasureKind::Qt),
        ("meanqtint", MeasureKind::Qt),
        ("qtcb", MeasureKind::QtcBazett),
        ("qtcf", MeasureKind::QtcFridericia),
        ("meanqtc", MeasureKind::Qtc),
        ("pfrontaxis", MeasureKind::PAxis),
        ("qrsfrontaxis", MeasureKind::QrsAxis),
        ("tfrontaxis", MeasureKind::TAxis),
    ];
    let mut out: Vec<DeviceMeasurement> = Vec::new();
    for (name, kind) in NAMES {
        if out.iter().any(|d| d.kind == kind) {
            continue;
        }
        // "Failed" and empty elements are measurements the device could not make
        if let Some(v) = number(child(m, name).and_then(text)) {
            out.push(DeviceMeasurement { kind, value: v });
        }
    }
    out
}

fn statements(interp: Node<'_, '_>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = child(interp, "severity").and_then(text) {
        out.push(s);
    }
    for st in xml::children(interp, "statement").take(64) {
        let left = child(st, "leftstatement").and_then(text);
        let right = child(st, "rightstatement").and_then(text);
        match (left, right) {
            (Some(l), Some(r)) => out.push(format!("{l} ({r})")),
            (Some(l), None) => out.push(l),
            (None, Some(r)) => out.push(r),
            (None, None) => {}
        }
    }
    out
}

/// Philips XLI: the waveform is a run of chunks, one per lead: an 8-byte header (chunk
/// size, 2 unknown bytes, the first sample), then LZW with 10-bit codes whose output bytes
/// are the high bytes of all 16-bit deltas followed by all low bytes, then a second-order
/// predictor.
pub mod xli {
    /// The most chunks read (leads) and the most bytes one chunk may expand to.
    const MAX_CHUNKS: usize = crate::record::MAX_LEADS + 8;
    const MAX_CHUNK_OUT: usize = 2 * crate::record::MAX_SAMPLES;

    pub fn decode(data: &[u8], leads: usize) -> Result<Vec<Vec<i32>>, String> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() && out.len() < leads.min(MAX_CHUNKS) {
            let header = data.get(at..at + 8).ok_or("a chunk header is cut short")?;
            at += 8;
            let size = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let start = i16::from_le_bytes([header[6], header[7]]) as i32;
            let size = usize::try_from(size).map_err(|_| format!("chunk size {size}"))?;
            let chunk = data.get(at..at + size).ok_or_else(|| format!("a chunk of {size} bytes runs past the end"))?;
            at += size;
            let mut bytes = lzw(chunk)?;
            if bytes.len() % 2 == 1 {
                bytes.push(0);
            }
            out.push(deltas(&bytes, start)?);
        }
        Ok(out)
    }

    fn lzw(input: &[u8]) -> Result<Vec<u8>, String> {
        const BITS: u32 = 10;
        const MAX_CODE: usize = (1 << BITS) - 2;
        let mut table: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut previous: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let (mut offset, mut bit_count, mut bit_buffer) = (0usize, 0u32, 0u32);
        loop {
            while bit_count <= 24 {
                if offset < input.len() {
                    bit_buffer |= (input[offset] as u32) << (24 - bit_count);
                    offset += 1;
                    bit_count += 8;
                } else {
                    break;
                }
            }
            if bit_count < BITS {
                return Ok(out);
            }
            let code = (bit_buffer >> (32 - BITS)) as usize;
            bit_buffer <<= BITS;
            bit_count -= BITS;
            if code > MAX_CODE {
                return Ok(out);
            }
            let data = if code < table.len() {
                table[code].clone()
            } else if code == table.len() && !previous.is_empty() {
                let mut d = previous.clone();
                d.push(previous[0]);
                d
            } else {
                return Err(format!("LZW code {code} refers to no entry"));
            };
            if !previous.is_empty() && table.len() <= MAX_CODE {
                let mut next = previous.clone();
                next.push(data[0]);
                table.push(next);
            }
            out.extend_from_slice(&data);
            if out.len() > MAX_CHUNK_OUT {
                return Err(format!("a chunk expands past {MAX_CHUNK_OUT} bytes"));
            }
            previous = data;
        }
    }

    fn deltas(bytes: &[u8], first: i32) -> Result<Vec<i32>, String> {
        let n = bytes.len() / 2;
        let mut d: Vec<i32> = (0..n).map(|i| i16::from_be_bytes([bytes[i], bytes[n + i]]) as i32).collect();
        if n < 2 {
            return Ok(d);
        }
        let (mut x, mut y, mut last) = (d[0], d[1], first);
        for v in d.iter_mut().skip(2) {
            let z = 2 * y - x - last;
            if z < i16::MIN as i32 || z > i16::MAX as i32 {
                return Err(format!("a sample ({z}) leaves the 16-bit range"));
            }
            last = *v - 64;
            *v = z;
            x = y;
            y = z;
        }
        Ok(d)
    }
}
