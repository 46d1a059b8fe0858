//! One ECG as read from any format: who, when, which device, the leads as integer codes
//! with their scale (so the DICOM made from it holds the cart's own numbers, exactly), and
//! what the device measured and said.

use std::fmt;

/// The file formats readhub reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SourceFormat {
    /// HL7 v3 Annotated ECG (FDA XML)
    Hl7Aecg,
    /// Philips Sierra / PhilipsECG XML (PageWriter, TraceMaster, HeartStart)
    PhilipsSierraXml,
    /// SCP-ECG (EN 1064 / ISO 11073-91064)
    ScpEcg,
}

impl SourceFormat {
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Hl7Aecg => "HL7 aECG",
            SourceFormat::PhilipsSierraXml => "Philips Sierra XML",
            SourceFormat::ScpEcg => "SCP-ECG",
        }
    }

    /// A short token for file names and the original's media type.
    pub fn token(self) -> &'static str {
        match self {
            SourceFormat::Hl7Aecg => "hl7-aecg",
            SourceFormat::PhilipsSierraXml => "philips-xml",
            SourceFormat::ScpEcg => "scp-ecg",
        }
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a file was refused. The text names what was wrong, in words a technician can pass on.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0}")]
    NotEcg(String),
    #[error("the file is {bytes} bytes, more than the {limit} an ECG file may have / 文件过大")]
    TooLarge { bytes: usize, limit: usize },
    #[error("{format} file cannot be read: {reason} / 心电图文件无法解析")]
    Malformed { format: SourceFormat, reason: String },
    #[error("{format}: {reason}")]
    Unsupported { format: SourceFormat, reason: String },
}

impl FormatError {
    pub fn malformed(format: SourceFormat, reason: impl Into<String>) -> Self {
        FormatError::Malformed { format, reason: reason.into() }
    }
}

/// One lead: µV = code × `scale_uv` + `offset_uv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lead {
    /// I, II, III, aVR, aVL, aVF, V1 … V6, or the cart's own name
    pub label: String,
    pub codes: Vec<i32>,
    pub scale_uv: f64,
    pub offset_uv: f64,
}

impl Lead {
    pub fn microvolts(&self) -> impl Iterator<Item = f64> + '_ {
        self.codes.iter().map(|c| *c as f64 * self.scale_uv + self.offset_uv)
    }
}

/// The measurements readhub knows by meaning, from any source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    HeartRate,
    Rr,
    Pr,
    PDuration,
    Qrs,
    Qt,
    QtcBazett,
    QtcFridericia,
    /// QTc with the formula not stated
    Qtc,
    PAxis,
    QrsAxis,
    TAxis,
}

impl MeasureKind {
    /// (UCUM unit, English name, LOINC code where there is one)
    pub fn describe(self) -> (&'static str, &'static str, Option<&'static str>) {
        match self {
            MeasureKind::HeartRate => ("/min", "Heart Rate", Some("8867-4")),
            MeasureKind::Rr => ("ms", "RR Interval", None),
            MeasureKind::Pr => ("ms", "PR Interval", Some("8625-6")),
            MeasureKind::PDuration => ("ms", "P Duration", None),
            MeasureKind::Qrs => ("ms", "QRS Duration", Some("8633-0")),
            MeasureKind::Qt => ("ms", "QT Interval", Some("8634-8")),
            MeasureKind::QtcBazett => ("ms", "QTc Interval (Bazett)", None),
            MeasureKind::QtcFridericia => ("ms", "QTc Interval (Fridericia)", None),
            MeasureKind::Qtc => ("ms", "QTc Interval", Some("8636-3")),
            MeasureKind::PAxis => ("deg", "P Axis", Some("8626-4")),
            MeasureKind::QrsAxis => ("deg", "QRS Axis", Some("8632-2")),
            MeasureKind::TAxis => ("deg", "T Axis", Some("8638-9")),
        }
    }

    /// What a device measurement is, from its name (a DICOM annotation's Code Meaning, or
    /// a vendor's element name): "Ventricular Heart Rate", "QTc Interval", "QRS Axis"…
    pub fn recognise(name: &str) -> Option<MeasureKind> {
        let n = name.to_ascii_lowercase().replace(['-', '_'], " ");
        let has = |s: &str| n.contains(s);
        Some(if has("qtc") {
            if has("fridericia") || n.ends_with("qtcf") {
                MeasureKind::QtcFridericia
            } else if has("bazett") || n.ends_with("qtcb") {
                MeasureKind::QtcBazett
            } else {
                MeasureKind::Qtc
            }
        } else if has("axis") || has("angle") {
            if has("qrs") {
                MeasureKind::QrsAxis
            } else if n.starts_with("p ") || has(" p ") || has("p axis") || has("p front") {
                MeasureKind::PAxis
            } else if has("t axis") || n.starts_with("t ") || has("t front") {
                MeasureKind::TAxis
            } else {
                return None;
            }
        } else if has("heart rate") || has("ventricular rate") || n == "hr" || n == "vent rate" {
            MeasureKind::HeartRate
        } else if has("rr") || has("r r") {
            MeasureKind::Rr
        } else if has("pr") || has("p r") {
            MeasureKind::Pr
        } else if has("qrs") {
            MeasureKind::Qrs
        } else if has("qt") || has("q t") {
            MeasureKind::Qt
        } else if n.starts_with("p dur") || n == "p" {
            MeasureKind::PDuration
        } else {
            return None;
        })
    }
}

/// A measurement the device made, in the kind's unit (bpm, ms, degrees).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DeviceMeasurement {
    pub kind: MeasureKind,
    pub value: f64,
}

/// Patient sex as DICOM writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
    Other,
}

impl Sex {
    pub fn dicom(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
            Sex::Other => "O",
        }
    }

    pub fn from_text(s: &str) -> Option<Sex> {
        match s.trim().to_ascii_lowercase().as_str() {
            "m" | "male" | "男" => Some(Sex::Male),
            "f" | "female" | "女" => Some(Sex::Female),
            "o" | "other" | "un" | "u" | "unknown" | "" => None,
            _ => Some(Sex::Other),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patient {
    pub id: Option<String>,
    /// DICOM PN: FAMILY^GIVEN
    pub name: Option<String>,
    pub sex: Option<Sex>,
    /// YYYYMMDD
    pub birth_date: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Device {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub software: Option<String>,
    pub institution: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Filters {
    /// high-pass cut-off (DICOM Filter Low Frequency)
    pub low_hz: Option<f64>,
    /// low-pass cut-off (DICOM Filter High Frequency)
    pub high_hz: Option<f64>,
    pub notch_hz: Option<f64>,
}

/// One ECG, whatever file it came in.
#[derive(Debug, Clone, PartialEq)]
pub struct EcgRecord {
    pub format: SourceFormat,
    pub patient: Patient,
    /// YYYYMMDDHHMMSS (local time of the cart)
    pub acquired_at: Option<String>,
    pub accession_number: Option<String>,
    pub device: Device,
    pub sampling_hz: f64,
    pub leads: Vec<Lead>,
    pub filters: Filters,
    pub measurements: Vec<DeviceMeasurement>,
    /// the device's interpretation statements, in its order
    pub statements: Vec<String>,
}

/// The most leads a record may have (12 + extra chest or Frank leads; DICOM General ECG
/// allows 24 channels).
pub const MAX_LEADS: usize = 24;
/// The most samples per lead (10 minutes at 1000 Hz).
pub const MAX_SAMPLES: usize = 600_000;

impl EcgRecord {
    /// The checks every format's reader ends with: leads present, of one length, sampling
    /// rate sane, scales positive.
    pub fn validate(mut self) -> Result<EcgRecord, FormatError> {
        let f = self.format;
        if !(self.sampling_hz.is_finite() && (50.0..=20_000.0).contains(&self.sampling_hz)) {
            return Err(FormatError::malformed(f, format!("sampling rate {} Hz is not plausible", self.sampling_hz)));
        }
        if self.leads.is_empty() {
            return Err(FormatError::malformed(f, "no leads with samples"));
        }
        if self.leads.len() > MAX_LEADS {
            return Err(FormatError::malformed(f, format!("{} leads, more than {MAX_LEADS}", self.leads.len())));
        }
        // leads a few samples apart in length (a cart's rounding of the last block) are cut
        // to the shortest; more than that, they were not recorded together
        let shortest = self.leads.iter().map(|l| l.codes.len()).min().unwrap_or(0);
        let longest = self.leads.iter().map(|l| l.codes.len()).max().unwrap_or(0);
        if shortest == 0 {
            let empty = self.leads.iter().find(|l| l.codes.is_empty()).map_or("?", |l| l.label.as_str());
            return Err(FormatError::malformed(f, format!("lead {empty} has no samples")));
        }
        if longest - shortest > (shortest / 100).max(2) {
            let (a, b) = (
                self.leads.iter().find(|l| l.codes.len() == shortest).expect("shortest"),
                self.leads.iter().find(|l| l.codes.len() == longest).expect("longest"),
            );
            return Err(FormatError::malformed(
                f,
                format!("lead {} has {} samples, lead {} has {}: leads must be simultaneous", a.label, shortest, b.label, longest),
            ));
        }
        for l in &mut self.leads {
            l.codes.truncate(shortest);
        }
        for l in &self.leads {
            if !(l.scale_uv.is_finite() && l.scale_uv > 0.0 && l.offset_uv.is_finite()) {
                return Err(FormatError::malformed(f, format!("lead {} has scale {} µV and origin {} µV", l.label, l.scale_uv, l.offset_uv)));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for l in &self.leads {
            if !seen.insert(l.label.clone()) {
                return Err(FormatError::malformed(f, format!("lead {} appears twice", l.label)));
            }
        }
        self.statements.retain(|s| !s.trim().is_empty());
        Ok(self)
    }

    /// Whether every code fits 16 bits (else the DICOM made is General 32-bit ECG).
    pub fn fits_16_bits(&self) -> bool {
        self.leads.iter().all(|l| l.codes.iter().all(|c| (i16::MIN as i32..=i16::MAX as i32).contains(c)))
    }

    /// The duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.leads.first().map_or(0.0, |l| l.codes.len() as f64 / self.sampling_hz)
    }
}

pub use readhub_types::lead::lead_label;

/// A date or date-time in any of the shapes the formats use ("2010-01-19", "15:19:22",
/// "20021122091000.000") as DICOM digits.
pub fn digits(s: &str) -> String {
    let s = s.trim();
    // a time zone after 8 or more digits ("20021122091000-0500") is not part of the time
    let cut = s.char_indices().find(|(i, c)| *c == '+' || *c == '.' || (*c == '-' && *i >= 8 && s[..*i].bytes().all(|b| b.is_ascii_digit())));
    let s = cut.map_or(s, |(i, _)| &s[..i]);
    s.chars().filter(|c| c.is_ascii_digit()).collect()
}

/// An 8-lead recording (I, II, V1–V6: what many carts store) gets III, aVR, aVL and aVF
/// by Einthoven's and Goldberger's laws, as every ECG printer draws them. The derived codes
/// are at half the scale, so they are exact: III = II − I, aVR = −(I + II)/2,
/// aVL = I − II/2, aVF = II − I/2. Nothing is derived when I or II is missing or their
/// scales differ.
pub fn derive_limb_leads(leads: &mut Vec<Lead>) {
    let has = |l: &[Lead], n: &str| l.iter().any(|x| x.label == n);
    if ["III", "aVR", "aVL", "aVF"].iter().all(|n| has(leads, n)) {
        return;
    }
    let (Some(i), Some(ii)) = (leads.iter().find(|l| l.label == "I"), leads.iter().find(|l| l.label == "II")) else {
        return;
    };
    if i.scale_uv != ii.scale_uv || i.codes.len() != ii.codes.len() {
        return;
    }
    let half = i.scale_uv / 2.0;
    let make = |label: &str, f: &dyn Fn(i64, i64) -> i64, offset: f64| -> Option<Lead> {
        let codes: Option<Vec<i32>> = i.codes.iter().zip(&ii.codes).map(|(a, b)| i32::try_from(f(*a as i64, *b as i64)).ok()).collect();
        Some(Lead { label: label.into(), codes: codes?, scale_uv: half, offset_uv: offset })
    };
    let (oi, oii) = (i.offset_uv, ii.offset_uv);
    let derived: Vec<Lead> = [
        make("III", &|a, b| 2 * (b - a), oii - oi),
        make("aVR", &|a, b| -(a + b), -(oi + oii) / 2.0),
        make("aVL", &|a, b| 2 * a - b, oi - oii / 2.0),
        make("aVF", &|a, b| 2 * b - a, oii - oi / 2.0),
    ]
    .into_iter()
    .flatten()
    .filter(|l| !has(leads, &l.label))
    .collect();
    if derived.len() + leads.len() <= MAX_LEADS {
        // after II, in the usual order
        let at = leads.iter().position(|l| l.label == "II").map_or(leads.len(), |p| p + 1);
        for (k, l) in derived.into_iter().enumerate() {
            leads.insert(at + k, l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(lengths: &[usize]) -> EcgRecord {
        EcgRecord {
            format: SourceFormat::Hl7Aecg,
            patient: Patient::default(),
            acquired_at: None,
            accession_number: None,
            device: Device::default(),
            sampling_hz: 500.0,
            leads: lengths.iter().enumerate().map(|(k, n)| Lead { label: format!("L{k}"), codes: vec![1; *n], scale_uv: 5.0, offset_uv: 0.0 }).collect(),
            filters: Filters::default(),
            measurements: Vec::new(),
            statements: Vec::new(),
        }
    }

    #[test]
    fn leads_a_few_samples_apart_are_cut_to_the_shortest_and_others_are_refused() {
        let r = record(&[5000, 4998, 5000]).validate().unwrap();
        assert!(r.leads.iter().all(|l| l.codes.len() == 4998));
        let e = record(&[5000, 2500]).validate().unwrap_err().to_string();
        assert!(e.contains("must be simultaneous"), "{e}");
        assert!(record(&[5000, 0]).validate().unwrap_err().to_string().contains("no samples"));
    }

    #[test]
    fn derived_limb_leads_are_exact() {
        let mut leads = vec![
            Lead { label: "I".into(), codes: vec![100, -3, 7], scale_uv: 5.0, offset_uv: 0.0 },
            Lead { label: "II".into(), codes: vec![50, 9, -1], scale_uv: 5.0, offset_uv: 0.0 },
        ];
        derive_limb_leads(&mut leads);
        let uv = |l: &str| leads.iter().find(|x| x.label == l).unwrap().microvolts().collect::<Vec<f64>>();
        let (i, ii) = (uv("I"), uv("II"));
        for k in 0..3 {
            assert_eq!(uv("III")[k], ii[k] - i[k]);
            assert_eq!(uv("aVR")[k], -(i[k] + ii[k]) / 2.0);
            assert_eq!(uv("aVL")[k], i[k] - ii[k] / 2.0);
            assert_eq!(uv("aVF")[k], ii[k] - i[k] / 2.0);
        }
        assert_eq!(leads.iter().map(|l| l.label.as_str()).collect::<Vec<_>>(), ["I", "II", "III", "aVR", "aVL", "aVF"]);
    }
}
