//! HL7 v3 Annotated ECG (the FDA's aECG XML). What readhub takes from it:
//! - the first rhythm `series` and its first `sequenceSet`: the time sequence
//!   (`GLIST_TS`/`GLIST_PQ` increment → sampling rate) and one `SLIST_PQ` sequence per
//!   lead (`MDC_ECG_LEAD_*`: origin, scale, integer digits);
//! - the subject (`trialSubject` id, `subjectDemographicPerson` name, sex, birth time), the
//!   effective time, the device (`manufacturedSeriesDevice`, `manufacturerOrganization`);
//! - the filter control variables (`MDC_ECG_CTL_VBL_ATTR_FILTER_*`);
//! - global measurements (`MDC_ECG_HEART_RATE`, `MDC_ECG_TIME_PD_*`, `MDC_ECG_ANGLE_*`
//!   annotations not inside one beat's or one lead's annotation) and interpretation
//!   statements (annotations whose code names an interpretation, with a text value).

use roxmltree::Node;

use crate::record::{digits, lead_label, Device, DeviceMeasurement, EcgRecord, Filters, Lead, MeasureKind, Patient, Sex, SourceFormat};
use crate::xml::{self, attr, child, find, find_all, number, path, text};
use crate::FormatError;

const F: SourceFormat = SourceFormat::Hl7Aecg;

fn bad(reason: impl Into<String>) -> FormatError {
    FormatError::malformed(F, reason)
}

pub fn read(bytes: &[u8]) -> Result<EcgRecord, FormatError> {
    let text_ = xml::decode_text(bytes).map_err(bad)?;
    let doc = xml::parse(&text_).map_err(bad)?;
    let root = doc.root_element();
    if root.tag_name().name() != "AnnotatedECG" {
        return Err(bad(format!("the root element is {}, not AnnotatedECG", root.tag_name().name())));
    }
    let series = xml::children(root, "component")
        .filter_map(|c| child(c, "series"))
        .next()
        .ok_or_else(|| bad("no component/series: the file holds no waveforms"))?;
    let sets: Vec<_> = xml::children(series, "component").filter_map(|c| child(c, "sequenceSet")).collect();
    if sets.is_empty() {
        return Err(bad("the series has no sequenceSet"));
    }
    // most carts put every lead in one sequence set; some split them over several with the
    // same timing: their leads are taken together while the sets agree (same increment,
    // same length), and the first set alone otherwise
    let mut increment_s = None;
    let mut start = None;
    let mut leads: Vec<Lead> = Vec::new();
    for (k, set) in sets.iter().enumerate() {
        let (inc, head, set_leads) = sequence_set(*set)?;
        if k == 0 {
            increment_s = inc;
            start = head;
            leads = set_leads;
            continue;
        }
        // same increment and the same start: recorded at once (a 3×4 export's sets start
        // 2.5 s apart and are not taken together)
        let same_time = inc.is_some() && inc == increment_s && head == start;
        let same_length = set_leads.first().map(|l| l.codes.len()) == leads.first().map(|l| l.codes.len());
        if same_time && same_length {
            for l in set_leads {
                if !leads.iter().any(|x| x.label == l.label) {
                    leads.push(l);
                }
            }
        }
    }
    let inc = increment_s.ok_or_else(|| bad("the sequenceSet has no TIME_ABSOLUTE or TIME_RELATIVE sequence"))?;
    if !(inc > 0.0) {
        return Err(bad(format!("time increment {inc} s")));
    }

    let mut record = EcgRecord {
        format: F,
        patient: patient(root),
        acquired_at: child(root, "effectiveTime")
            .and_then(|t| ["low", "center", "high"].iter().find_map(|k| child(t, k).and_then(|n| attr(n, "value"))))
            .map(|v| digits(&v)),
        accession_number: None,
        device: device(series),
        sampling_hz: (1.0 / inc * 1000.0).round() / 1000.0,
        leads,
        filters: filters(series),
        measurements: Vec::new(),
        statements: Vec::new(),
    };
    annotations(root, &mut record);
    crate::record::derive_limb_leads(&mut record.leads);
    record.validate()
}

/// One sequence set: its time increment in seconds, its start (the time sequence's head),
/// and its leads.
fn sequence_set(set: Node<'_, '_>) -> Result<(Option<f64>, Option<String>, Vec<Lead>), FormatError> {
    let mut increment_s = None;
    let mut head = None;
    let mut leads = Vec::new();
    for seq in xml::children(set, "component").filter_map(|c| child(c, "sequence")) {
        let code = child(seq, "code").and_then(|c| attr(c, "code")).unwrap_or_default();
        let value = child(seq, "value").ok_or_else(|| bad(format!("sequence {code} has no value")))?;
        if code.starts_with("TIME_") {
            let inc = child(value, "increment").ok_or_else(|| bad("the time sequence has no increment"))?;
            let v = number(attr(inc, "value")).ok_or_else(|| bad("the time increment has no value"))?;
            let unit = attr(inc, "unit").unwrap_or_else(|| "s".into());
            increment_s = Some(v * time_factor(&unit).ok_or_else(|| bad(format!("time unit {unit} is not s, ms or us")))?);
            head = child(value, "head").and_then(|h| attr(h, "value"));
            continue;
        }
        if !code.starts_with("MDC_ECG_LEAD_") {
            continue;
        }
        let (origin, ou) = pq(child(value, "origin")).unwrap_or((0.0, "uV".into()));
        let (scale, su) = pq(child(value, "scale")).ok_or_else(|| bad(format!("lead {code} has no scale")))?;
        let uv = |v: f64, u: &str| voltage_factor(u).map(|f| v * f).ok_or_else(|| bad(format!("lead {code}: voltage unit {u} is not nV, uV, mV or V")));
        let digits_ = child(value, "digits").and_then(text).ok_or_else(|| bad(format!("lead {code} has no digits")))?;
        let (codes, decimals) = parse_digits(&digits_).map_err(|e| bad(format!("lead {code}: {e}")))?;
        let scale_uv = uv(scale, &su)? / 10f64.powi(decimals);
        leads.push(Lead { label: lead_label(&code), codes, scale_uv, offset_uv: uv(origin, &ou)? });
    }
    Ok((increment_s, head, leads))
}

fn time_factor(unit: &str) -> Option<f64> {
    match unit {
        "s" => Some(1.0),
        "ms" => Some(1e-3),
        "us" => Some(1e-6),
        _ => None,
    }
}

fn voltage_factor(unit: &str) -> Option<f64> {
    match unit {
        "nV" => Some(1e-3),
        "uV" => Some(1.0),
        "mV" => Some(1e3),
        "V" => Some(1e6),
        _ => None,
    }
}

/// A physical quantity element: (value, unit).
fn pq(n: Option<Node<'_, '_>>) -> Option<(f64, String)> {
    let n = n?;
    Some((number(attr(n, "value"))?, attr(n, "unit").unwrap_or_else(|| "1".into())))
}

/// SLIST digits are integers separated by white space. Some writers put decimals ("12.5");
/// those are kept exact by scaling: the codes × 10^d, the scale ÷ 10^d (returned as the
/// power d, at most 4).
fn parse_digits(s: &str) -> Result<(Vec<i32>, i32), String> {
    let tokens: Vec<&str> = s.split_ascii_whitespace().collect();
    if tokens.len() > crate::record::MAX_SAMPLES {
        return Err(format!("more than {} samples", crate::record::MAX_SAMPLES));
    }
    let decimals = tokens.iter().map(|t| t.split_once('.').map_or(0, |(_, f)| f.trim_end_matches('0').len())).max().unwrap_or(0);
    if decimals > 4 {
        return Err(format!("digits with {decimals} decimals: SLIST digits are integers"));
    }
    let factor = 10f64.powi(decimals as i32);
    let mut out = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let v = if decimals == 0 {
            t.parse::<i64>().ok().or_else(|| t.parse::<f64>().ok().filter(|v| v.fract() == 0.0).map(|v| v as i64))
        } else {
            t.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| (v * factor).round() as i64)
        };
        let v = v.and_then(|v| i32::try_from(v).ok()).ok_or_else(|| format!("digit {} ({t:?}) is not an integer", i + 1))?;
        out.push(v);
    }
    Ok((out, decimals as i32))
}

fn patient(root: Node<'_, '_>) -> Patient {
    let Some(subject) = find(root, "trialSubject") else {
        return Patient::default();
    };
    let person = child(subject, "subjectDemographicPerson");
    let name = person.and_then(|p| child(p, "name")).and_then(|n| {
        let family = child(n, "family").and_then(text);
        let given = child(n, "given").and_then(text);
        match (family, given) {
            (None, None) => text(n),
            (f, g) => Some(format!("{}^{}", f.unwrap_or_default(), g.unwrap_or_default()).trim_end_matches('^').to_string()),
        }
    });
    Patient {
        id: child(subject, "id").and_then(|i| attr(i, "extension").or_else(|| attr(i, "root"))),
        name,
        sex: person.and_then(|p| child(p, "administrativeGenderCode")).and_then(|g| attr(g, "code")).and_then(|c| Sex::from_text(&c)),
        birth_date: person.and_then(|p| child(p, "birthTime")).and_then(|b| attr(b, "value")).map(|v| digits(&v).chars().take(8).collect()),
    }
}

fn device(series: Node<'_, '_>) -> Device {
    let author = find(series, "seriesAuthor");
    let dev = author.and_then(|a| child(a, "manufacturedSeriesDevice"));
    Device {
        manufacturer: author.and_then(|a| path(a, &["manufacturerOrganization", "name"])).and_then(text),
        model: dev.and_then(|d| child(d, "manufacturerModelName")).and_then(text),
        serial: dev.and_then(|d| child(d, "id")).and_then(|i| attr(i, "extension")),
        software: dev.and_then(|d| child(d, "softwareName")).and_then(text),
        institution: None,
    }
}

fn filters(series: Node<'_, '_>) -> Filters {
    let mut f = Filters::default();
    for cv in find_all(series, "controlVariable") {
        let Some(code) = child(cv, "code").and_then(|c| attr(c, "code")) else { continue };
        let value = |inner: &str| {
            find_all(cv, "controlVariable")
                .find(|n| child(*n, "code").and_then(|c| attr(c, "code")).as_deref() == Some(inner))
                .and_then(|n| child(n, "value"))
                .and_then(|v| number(attr(v, "value")))
        };
        match code.as_str() {
            "MDC_ECG_CTL_VBL_ATTR_FILTER_LOW_PASS" => f.high_hz = f.high_hz.or(value("MDC_ECG_CTL_VBL_ATTR_FILTER_CUTOFF_FREQ")),
            "MDC_ECG_CTL_VBL_ATTR_FILTER_HIGH_PASS" => f.low_hz = f.low_hz.or(value("MDC_ECG_CTL_VBL_ATTR_FILTER_CUTOFF_FREQ")),
            "MDC_ECG_CTL_VBL_ATTR_FILTER_NOTCH" => f.notch_hz = f.notch_hz.or(value("MDC_ECG_CTL_VBL_ATTR_FILTER_NOTCH_FREQ")),
            _ => {}
        }
    }
    f
}

fn measure_kind(code: &str) -> Option<MeasureKind> {
    Some(match code {
        "MDC_ECG_HEART_RATE" | "MDC_ECG_CARD_BEAT_RATE" | "MDC_ECG_RATE_VENT" => MeasureKind::HeartRate,
        "MDC_ECG_TIME_PD_RR" | "MDC_ECG_TIME_PD_RRint" | "MDC_ECG_TIME_PD_RR_GL" => MeasureKind::Rr,
        "MDC_ECG_TIME_PD_PR" | "MDC_ECG_TIME_PD_PR_GL" => MeasureKind::Pr,
        "MDC_ECG_TIME_PD_P" | "MDC_ECG_TIME_PD_P_GL" => MeasureKind::PDuration,
        "MDC_ECG_TIME_PD_QRS" | "MDC_ECG_TIME_PD_QRS_GL" => MeasureKind::Qrs,
        "MDC_ECG_TIME_PD_QT" | "MDC_ECG_TIME_PD_QT_GL" => MeasureKind::Qt,
        "MDC_ECG_TIME_PD_QTcB" | "MDC_ECG_TIME_PD_QTc_BAZETT" => MeasureKind::QtcBazett,
        "MDC_ECG_TIME_PD_QTcF" | "MDC_ECG_TIME_PD_QTc_FRIDERICIA" => MeasureKind::QtcFridericia,
        "MDC_ECG_TIME_PD_QTc" | "MDC_ECG_TIME_PD_QTc_GL" => MeasureKind::Qtc,
        "MDC_ECG_ANGLE_P_FRONT" | "MDC_ECG_ANGLE_P_FRONT_GL" => MeasureKind::PAxis,
        "MDC_ECG_ANGLE_QRS_FRONT" | "MDC_ECG_ANGLE_QRS_FRONT_GL" => MeasureKind::QrsAxis,
        "MDC_ECG_ANGLE_T_FRONT" | "MDC_ECG_ANGLE_T_FRONT_GL" => MeasureKind::TAxis,
        _ => return None,
    })
}

/// Whether an annotation belongs to one beat or one lead (its measurements are not the
/// ECG's global ones): an enclosing annotation that is a beat, or that is supported by a
/// region of interest naming a lead.
fn local(a: Node<'_, '_>) -> bool {
    a.ancestors().skip(1).filter(|n| n.is_element() && n.tag_name().name() == "annotation").any(|outer| {
        let code = child(outer, "code").and_then(|c| attr(c, "code")).unwrap_or_default();
        code == "MDC_ECG_BEAT"
            || child(outer, "support")
                .is_some_and(|s| find_all(s, "code").any(|c| attr(c, "code").is_some_and(|c| c.starts_with("MDC_ECG_LEAD_"))))
    }) || child(a, "support").is_some_and(|s| find_all(s, "code").any(|c| attr(c, "code").is_some_and(|c| c.starts_with("MDC_ECG_LEAD_"))))
}

fn annotations(root: Node<'_, '_>, record: &mut EcgRecord) {
    for a in find_all(root, "annotation") {
        let Some(code) = child(a, "code").and_then(|c| attr(c, "code")) else { continue };
        let value = child(a, "value");
        if code.contains("INTERPRETATION") || code.contains("STATEMENT") || code.contains("COMMENT") {
            if let Some(t) = value.and_then(text) {
                if record.statements.len() < 64 && !record.statements.contains(&t) {
                    record.statements.push(t);
                }
            }
            continue;
        }
        let Some(kind) = measure_kind(&code) else { continue };
        if record.measurements.iter().any(|m| m.kind == kind) || local(a) {
            continue;
        }
        let Some((v, unit)) = pq(value) else { continue };
        let v = match (kind, unit.as_str()) {
            (MeasureKind::HeartRate, _) | (MeasureKind::PAxis | MeasureKind::QrsAxis | MeasureKind::TAxis, _) => v,
            (_, "s") => v * 1000.0,
            (_, "us") => v / 1000.0,
            _ => v,
        };
        record.measurements.push(DeviceMeasurement { kind, value: v });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(head: &str, leads: &[&str]) -> String {
        let digits: String = (0..600).map(|k| ((k % 50) * 4).to_string()).collect::<Vec<_>>().join(" ");
        let mut s = format!(
            r#"<component><sequenceSet><component><sequence><code code="TIME_ABSOLUTE"/><value xsi:type="GLIST_TS"><head value="{head}"/><increment value="0.002" unit="s"/></value></sequence></component>"#
        );
        for l in leads {
            s += &format!(
                r#"<component><sequence><code code="MDC_ECG_LEAD_{l}"/><value xsi:type="SLIST_PQ"><origin value="0" unit="uV"/><scale value="5" unit="uV"/><digits>{digits}</digits></value></sequence></component>"#
            );
        }
        s + "</sequenceSet></component>"
    }

    fn doc(sets: &[String]) -> Vec<u8> {
        format!(
            r#"<?xml version="1.0"?><AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><component><series><code code="RHYTHM"/>{}</series></component></AnnotatedECG>"#,
            sets.concat()
        )
        .into_bytes()
    }

    #[test]
    fn decimal_digits_are_kept_exact_and_words_are_refused() {
        assert_eq!(parse_digits("1 -2 3").unwrap(), (vec![1, -2, 3], 0));
        assert_eq!(parse_digits("1.5 -2 3.25").unwrap(), (vec![150, -200, 325], 2));
        assert_eq!(parse_digits("4.0 5").unwrap(), (vec![4, 5], 0));
        assert!(parse_digits("1 2 x").unwrap_err().contains("digit 3"));
        assert!(parse_digits("0.123456").unwrap_err().contains("decimals"));
    }

    #[test]
    fn sequence_sets_recorded_together_are_merged_and_others_are_not() {
        let together = read(&doc(&[set("20261201083000", &["I", "II"]), set("20261201083000", &["V1", "V2"])])).unwrap();
        let labels: Vec<&str> = together.leads.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2"], "merged, limb leads derived");
        assert_eq!(together.sampling_hz, 500.0);
        // a 3×4 export: the second set starts 2.5 s later
        let apart = read(&doc(&[set("20261201083000", &["I", "II"]), set("20261201083002.500", &["V1", "V2"])])).unwrap();
        assert!(!apart.leads.iter().any(|l| l.label == "V1"), "non-simultaneous sets are not taken together");
    }
}
