//! ORM^O01 and OMI^O23 (imaging orders) read into the worklist's [`NewOrder`]. Where a value
//! is taken from, in order of preference:
//!
//! | order field | from |
//! |---|---|
//! | order control | ORC-1: NW new, XO change, CA/DC cancel (SC and others are acknowledged, no change) |
//! | accession number | IPC-1, else OBR-18 (IHE SWF), else the filler order number (ORC-3/OBR-3), else the placer's (ORC-2/OBR-2) |
//! | patient | PID-3 (ID, 4th component issuer), PID-5 (every repetition: ASCII → alphabetic, Chinese → ideographic), PID-7, PID-8 |
//! | modality | IPC-5, else OBR-24 (diagnostic service section) |
//! | procedure | OBR-4 (code^text) |
//! | priority | TQ1-9, else ORC-7.6 / OBR-27.6, else OBR-5 (S stat, A asap → urgent, R routine) |
//! | scheduled time | TQ1-7, else ORC-7.4 / OBR-27.4, else OBR-36, else now |
//! | requesting physician | ORC-12, else OBR-16 (XCN: family^given) |
//! | requesting department | ORC-17 (text, else code), else PV1-3.1 |
//! | clinical history | OBR-13, and NTE-3 of the order |
//! | clinical question | OBR-31 (text, else code) |
//! | station AE | IPC-9 |
//! | Study Instance UID | IPC-3, else made by readhub |

use hl7_parser::message::Separators;
use hl7_parser::Message;
use worklist::orders::{NewOrder, OrderPatient};
use worklist::Priority;

use crate::message::{unescape, Header, Nak};

/// What an order message asks.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderControl {
    New,
    Change,
    Cancel,
    /// acknowledged, nothing changed (status requests, holds …)
    Other(String),
}

/// One order message, read.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderMessage {
    pub control: OrderControl,
    pub order: NewOrder,
    /// IPC-3 when the sender gives the Study Instance UID
    pub study_uid: Option<String>,
}

struct Reader<'a> {
    msg: &'a Message<'a>,
    seps: Separators,
}

impl Reader<'_> {
    /// SEG-field.component (1-based), first repetition, escapes decoded, trimmed.
    fn get(&self, seg: &str, field: usize, comp: usize) -> String {
        let raw = self
            .msg
            .segment(seg)
            .and_then(|s| s.field(field))
            .and_then(|f| f.repeat(1))
            .and_then(|r| r.component(comp))
            .map(|c| c.raw_value())
            .unwrap_or("");
        // a component with subcomponents: its first
        let first = raw.split(self.seps.subcomponent).next().unwrap_or("");
        unescape(first, &self.seps).trim().to_string()
    }

    fn first_of(&self, places: &[(&str, usize, usize)]) -> String {
        places.iter().map(|(s, f, c)| self.get(s, *f, *c)).find(|v| !v.is_empty()).unwrap_or_default()
    }

    /// every repetition of a field, as its components (escapes decoded)
    fn repeats(&self, seg: &str, field: usize) -> Vec<Vec<String>> {
        let Some(f) = self.msg.segment(seg).and_then(|s| s.field(field)) else { return Vec::new() };
        f.repeats()
            .map(|r| r.components().map(|c| unescape(c.raw_value(), &self.seps).trim().to_string()).collect())
            .collect()
    }
}

/// A DICOM PN from PID-5's repetitions: `family^given^middle^prefix^suffix` per group,
/// an ASCII repetition as the alphabetic group and a non-ASCII one as the ideographic
/// group; a name given only in Chinese is the alphabetic group (what modalities in China
/// show).
fn person_name(repeats: &[Vec<String>]) -> String {
    let group = |c: &Vec<String>| {
        let at = |k: usize| c.get(k).cloned().unwrap_or_default();
        // XPN: family, given, middle, suffix, prefix → PN: family, given, middle, prefix, suffix
        let parts = [at(0), at(1), at(2), at(4), at(3)];
        let mut s = parts.join("^");
        while s.ends_with('^') {
            s.pop();
        }
        s
    };
    readhub_types::pn::from_groups(repeats.iter().map(group))
}

fn priority_of(code: &str) -> Priority {
    match code.trim().to_ascii_uppercase().as_str() {
        "S" | "STAT" => Priority::Stat,
        "A" | "ASAP" | "P" | "C" | "HIGH" | "URGENT" => Priority::Urgent,
        _ => Priority::Routine,
    }
}

/// An HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as unix ms; without a zone it is the
/// hub's local time.
pub fn parse_dtm(v: &str, utc_offset_hours: i32) -> Option<i64> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    let (body, zone) = match v.find(['+', '-']) {
        Some(k) if k >= 4 => (&v[..k], Some(&v[k..])),
        _ => (v, None),
    };
    let body = body.split('.').next()?;
    if body.len() < 8 || !body.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let num = |a: usize, b: usize, d: u32| body.get(a..b).map_or(Some(d), |s| s.parse().ok());
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4, 1)? as i32, num(4, 6, 1)?, num(6, 8, 1)?)?;
    let time = chrono::NaiveTime::from_hms_opt(num(8, 10, 0)?, num(10, 12, 0)?, num(12, 14, 0)?)?;
    let offset_secs = match zone {
        Some(z) if z.len() == 5 && z.is_ascii() => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let h: i32 = z.get(1..3)?.parse().ok()?;
            let m: i32 = z.get(3..5)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
        _ => utc_offset_hours * 3600,
    };
    Some((date.and_time(time).and_utc().timestamp() - i64::from(offset_secs)) * 1000)
}

/// Read an order message (ORM^O01, OMI^O23). Refusals name the segment and field.
pub fn read_order(msg: &Message<'_>, header: &Header, utc_offset_hours: i32) -> Result<OrderMessage, Nak> {
    match (header.message_type.as_str(), header.trigger_event.as_str()) {
        ("ORM", "O01") | ("OMI", "O23") | ("OMG", "O19") => {}
        ("ORM" | "OMI" | "OMG", other) => {
            return Err(Nak::at(201, "MSH", 9, Some(2), format!("event {other:?} of {} is not an order: send O01 or O23", header.message_type)))
        }
        (other, _) => {
            return Err(Nak::at(
                200,
                "MSH",
                9,
                Some(1),
                format!("message type {other:?}: readhub takes orders as ORM^O01 or OMI^O23"),
            ))
        }
    }
    let r = Reader { msg, seps: msg.separators };
    for seg in ["PID", "ORC", "OBR"] {
        if msg.segment(seg).is_none() {
            return Err(Nak::at(100, seg, 0, None, format!("the order has no {seg} segment")));
        }
    }
    let control = match r.get("ORC", 1, 1).to_ascii_uppercase().as_str() {
        "NW" => OrderControl::New,
        "XO" => OrderControl::Change,
        "CA" | "DC" | "OC" => OrderControl::Cancel,
        "" => return Err(Nak::at(101, "ORC", 1, None, "ORC-1 (order control) is empty: NW, XO or CA")),
        other => OrderControl::Other(other.to_string()),
    };
    let accession_number = r.first_of(&[("IPC", 1, 1), ("OBR", 18, 1), ("ORC", 3, 1), ("OBR", 3, 1), ("ORC", 2, 1), ("OBR", 2, 1)]);
    if accession_number.is_empty() {
        return Err(Nak::at(101, "OBR", 18, None, "no accession number: give it in OBR-18 (or IPC-1, or the filler order number ORC-3)"));
    }
    let patient_id = r.get("PID", 3, 1);
    if patient_id.is_empty() {
        return Err(Nak::at(101, "PID", 3, Some(1), "PID-3 (patient identifier) is empty"));
    }
    let modality = r.first_of(&[("IPC", 5, 1), ("OBR", 24, 1)]).to_ascii_uppercase();
    if modality.is_empty() {
        return Err(Nak::at(101, "OBR", 24, None, "no modality: give it in OBR-24 (e.g. DX, CR, CT, ECG) or IPC-5"));
    }
    let sex = match r.get("PID", 8, 1).to_ascii_uppercase().as_str() {
        "M" => "M",
        "F" => "F",
        "O" | "A" | "N" => "O",
        "" | "U" => "",
        other => return Err(Nak::at(103, "PID", 8, None, format!("sex {other:?}: M, F, O or U (HL7 table 0001)"))),
    };
    let birth = r.get("PID", 7, 1);
    let birth_date = match birth.len() {
        0 => String::new(),
        // by characters: a byte slice would panic inside a multi-byte character (fuzzing found it)
        _ if birth.get(..8).is_some_and(|d| d.bytes().all(|c| c.is_ascii_digit())) => birth[..8].to_string(),
        _ => return Err(Nak::at(102, "PID", 7, None, format!("birth date {birth:?} is not YYYYMMDD"))),
    };
    let scheduled_raw = r.first_of(&[("TQ1", 7, 1), ("ORC", 7, 4), ("OBR", 27, 4), ("OBR", 36, 1)]);
    let scheduled_at = match scheduled_raw.as_str() {
        "" => None,
        v => Some(parse_dtm(v, utc_offset_hours).ok_or_else(|| {
            Nak::at(102, "TQ1", 7, None, format!("scheduled time {v:?} is not an HL7 date/time (YYYYMMDDHHMM[SS])"))
        })?),
    };
    let priority = priority_of(&r.first_of(&[("TQ1", 9, 1), ("ORC", 7, 6), ("OBR", 27, 6), ("OBR", 5, 1)]));
    let physician = {
        let p = r.repeats("ORC", 12);
        let p = if p.iter().all(|c| c.iter().all(String::is_empty)) { r.repeats("OBR", 16) } else { p };
        // XCN: id^family^given
        p.first().map(|c| {
            let family = c.get(1).cloned().unwrap_or_default();
            let given = c.get(2).cloned().unwrap_or_default();
            let name = if given.is_empty() { family } else { format!("{family}^{given}") };
            if name.is_empty() { c.first().cloned().unwrap_or_default() } else { name }
        })
    }
    .unwrap_or_default();
    let department = r.first_of(&[("ORC", 17, 2), ("ORC", 17, 1), ("PV1", 3, 1)]);
    let mut history = r.get("OBR", 13, 1);
    for nte in msg.segments.iter().filter(|s| s.name == "NTE") {
        if let Some(f) = nte.field(3) {
            let note = unescape(f.raw_value(), &msg.separators);
            if !note.trim().is_empty() {
                if !history.is_empty() {
                    history.push('\n');
                }
                history.push_str(note.trim());
            }
        }
    }
    let study_uid = Some(r.get("IPC", 3, 1)).filter(|u| !u.is_empty());
    if let Some(u) = &study_uid {
        if !readhub_types::is_valid_uid(u) {
            return Err(Nak::at(102, "IPC", 3, None, format!("Study Instance UID {u:?} is not a valid UID")));
        }
    }
    let order = NewOrder {
        accession_number,
        placer_order_number: r.first_of(&[("ORC", 2, 1), ("OBR", 2, 1)]),
        filler_order_number: r.first_of(&[("ORC", 3, 1), ("OBR", 3, 1)]),
        patient: OrderPatient {
            id: patient_id,
            issuer: r.get("PID", 3, 4),
            name: person_name(&r.repeats("PID", 5)),
            birth_date,
            sex: sex.to_string(),
        },
        modality,
        procedure_code: r.get("OBR", 4, 1),
        procedure_description: r.first_of(&[("OBR", 4, 2), ("OBR", 4, 1)]),
        priority,
        requesting_physician: physician,
        requesting_department: department,
        clinical_history: history,
        clinical_question: r.first_of(&[("OBR", 31, 2), ("OBR", 31, 1)]),
        scheduled_at,
        scheduled_station_ae: r.get("IPC", 9, 1),
        study_uid: study_uid.clone(),
    };
    Ok(OrderMessage { control, order, study_uid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::decode;

    fn read(text: &str) -> Result<OrderMessage, Nak> {
        let inbound = decode(text.as_bytes())?;
        let msg = crate::message::parse(&inbound.text)?;
        read_order(&msg, &inbound.header, 8)
    }

    const ORM: &str = "MSH|^~\\&|HIS|TOWNSHIP1|READHUB|HUB|20261202093000||ORM^O01|MSG001|P|2.5|||||CHN|UNICODE UTF-8\r\
PID|1||P1001^^^TOWNSHIP1||Zhang^San~张^三||19600102|M\r\
PV1|1|O|RAD^^^^^^^^放射科\r\
ORC|NW|PL123|FI456||SC||^^^20261202100000^^S|||||1001^Li^Si|||||^呼吸科\r\
OBR|1|PL123|FI456|CHEST^胸部正位|||||||||咳嗽两周 \\T\\ 发热|||||ACC0001||||||DX|||||||胸片排除肺炎\r\
NTE|1||吸烟史30年\r";

    #[test]
    fn an_orm_becomes_an_order() {
        let m = read(ORM).unwrap();
        assert_eq!(m.control, OrderControl::New);
        let o = m.order;
        assert_eq!(o.accession_number, "ACC0001");
        assert_eq!(o.placer_order_number, "PL123");
        assert_eq!(o.filler_order_number, "FI456");
        assert_eq!(o.patient.id, "P1001");
        assert_eq!(o.patient.issuer, "TOWNSHIP1");
        assert_eq!(o.patient.name, "Zhang^San=张^三");
        assert_eq!(o.patient.birth_date, "19600102");
        assert_eq!(o.patient.sex, "M");
        assert_eq!(o.modality, "DX");
        assert_eq!((o.procedure_code.as_str(), o.procedure_description.as_str()), ("CHEST", "胸部正位"));
        assert_eq!(o.priority, Priority::Stat);
        assert_eq!(o.requesting_physician, "Li^Si");
        assert_eq!(o.requesting_department, "呼吸科");
        assert_eq!(o.clinical_history, "咳嗽两周 & 发热\n吸烟史30年");
        assert_eq!(o.clinical_question, "胸片排除肺炎");
        // 10:00 in China is 02:00 UTC
        assert_eq!(o.scheduled_at, Some(parse_dtm("20261202020000+0000", 0).unwrap()));
    }

    #[test]
    fn missing_fields_are_named() {
        let no_acc = ORM.replace("ACC0001", "").replace("PL123", "").replace("FI456", "");
        let e = read(&no_acc).unwrap_err();
        assert_eq!((e.code, e.location.as_deref()), (101, Some("OBR^1^18")));
        let no_mod = ORM.replace("||DX||", "||||");
        assert_eq!(read(&no_mod).unwrap_err().location.as_deref(), Some("OBR^1^24"));
        let adt = ORM.replace("ORM^O01", "ADT^A01");
        assert_eq!(read(&adt).unwrap_err().code, 200);
        let bad_sex = ORM.replace("|19600102|M", "|19600102|X");
        assert_eq!(read(&bad_sex).unwrap_err().location.as_deref(), Some("PID^1^8"));
        let bad_time = ORM.replace("20261202100000", "tomorrow");
        assert_eq!(read(&bad_time).unwrap_err().code, 102);
        // a birth date with a Chinese character inside its first 8 bytes (found by fuzzing)
        let bad_birth = ORM.replace("|19600102|M", "|1960010藘豺|M");
        assert_eq!(read(&bad_birth).unwrap_err().location.as_deref(), Some("PID^1^7"));
        // a zone that is not +HHMM is ignored, never sliced inside a character
        assert_eq!(parse_dtm("20261202+中1", 8), parse_dtm("20261202", 8));
    }

    #[test]
    fn only_chinese_is_the_first_group() {
        assert_eq!(person_name(&[vec!["王".into(), "小东".into()]]), "王^小东");
        assert_eq!(person_name(&[vec!["Wang".into(), "XiaoDong".into()], vec!["王".into(), "小东".into()]]), "Wang^XiaoDong=王^小东");
    }
}
