//! One HL7 v2 message: its bytes decoded as MSH-18 says, its header read, and the
//! acknowledgement written back in the same character set.

use hl7_parser::message::Separators;
use hl7_parser::Message;

/// The character sets readhub reads and writes (HL7 table 0211).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `UNICODE UTF-8` (or none given and the bytes are valid UTF-8)
    Utf8,
    /// `GB 18030-2000` (or none given and the bytes are not UTF-8: Chinese HIS that send no
    /// MSH-18 write GBK, which GB18030 contains)
    Gb18030,
    /// `ASCII`, `8859/1`: decoded as Windows-1252, a superset
    Latin1,
}

impl Charset {
    /// From MSH-18 (its first repetition). `None`: a value readhub cannot read.
    pub fn from_msh18(v: &str) -> Option<Option<Charset>> {
        let v = v.trim().to_ascii_uppercase().replace(['-', '_'], " ");
        match v.as_str() {
            "" => Some(None),
            "UNICODE UTF 8" | "UTF 8" | "UNICODE" => Some(Some(Charset::Utf8)),
            "GB 18030 2000" | "GB18030" | "GB 18030" | "GBK" | "GB2312" | "GB 2312" | "CNS 11643 1992" => Some(Some(Charset::Gb18030)),
            "ASCII" | "8859/1" | "8859/15" => Some(Some(Charset::Latin1)),
            _ => None,
        }
    }

    /// How MSH-18 names it in what readhub sends.
    pub fn msh18(self) -> &'static str {
        match self {
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Gb18030 => "GB 18030-2000",
            Charset::Latin1 => "8859/1",
        }
    }

    fn encoding(self) -> &'static encoding_rs::Encoding {
        match self {
            Charset::Utf8 => encoding_rs::UTF_8,
            Charset::Gb18030 => encoding_rs::GB18030,
            Charset::Latin1 => encoding_rs::WINDOWS_1252,
        }
    }

    pub fn encode(self, text: &str) -> Vec<u8> {
        self.encoding().encode(text).0.into_owned()
    }
}

/// Why a message is refused: what a NAK says (MSA-1 AE/AR, ERR-2 location, ERR-3 code,
/// ERR-8 text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}{}", location.as_ref().map(|l| format!(" (at {l})")).unwrap_or_default())]
pub struct Nak {
    /// HL7 table 0357: 100 segment sequence, 101 required field missing, 102 data type,
    /// 103 table value not found, 200 unsupported message type, 201 unsupported event,
    /// 204 unknown key identifier, 205 duplicate key identifier, 206 application record
    /// locked, 207 application internal error
    pub code: u16,
    /// `SEG^1^FIELD` or `SEG^1^FIELD^COMPONENT` (ERR-2)
    pub location: Option<String>,
    pub text: String,
    /// AR (rejected: the message itself is wrong or not ours) or AE (error in processing)
    pub reject: bool,
}

impl Nak {
    pub fn at(code: u16, segment: &str, field: usize, component: Option<usize>, text: impl Into<String>) -> Nak {
        let location = match component {
            Some(c) => format!("{segment}^1^{field}^{c}"),
            None => format!("{segment}^1^{field}"),
        };
        Nak { code, location: Some(location), text: text.into(), reject: false }
    }
    pub fn general(code: u16, text: impl Into<String>) -> Nak {
        Nak { code, location: None, text: text.into(), reject: false }
    }
    fn code_text(&self) -> &'static str {
        match self.code {
            100 => "Segment sequence error",
            101 => "Required field missing",
            102 => "Data type error",
            103 => "Table value not found",
            200 => "Unsupported message type",
            201 => "Unsupported event code",
            203 => "Unsupported version id",
            204 => "Unknown key identifier",
            205 => "Duplicate key identifier",
            206 => "Application record locked",
            _ => "Application internal error",
        }
    }
}

/// The most bytes one message may have (an order is a few kilobytes; a report with its
/// PDF would not come this way).
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// A message as received: its text, decoded, and its header.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub text: String,
    pub charset: Charset,
    pub header: Header,
}

/// What MSH says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-9.1, MSH-9.2 (e.g. ORM, O01)
    pub message_type: String,
    pub trigger_event: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
    /// MSH-18 as received (echoed in the ACK)
    pub charset_field: String,
}

/// Read MSH-18 from the raw bytes: the delimiters are ASCII in every character set HL7 uses
/// here, and MSH is read up to its first non-ASCII byte at most (a GB18030 trail byte may
/// be `|`), so the fields before MSH-18 are expected in ASCII, as they are in practice.
fn raw_msh18(bytes: &[u8]) -> Option<String> {
    let msh = bytes.split(|b| *b == b'\r' || *b == b'\n').next()?;
    if msh.len() < 8 || &msh[..3] != b"MSH" {
        return None;
    }
    let sep = msh[3];
    let fields: Vec<&[u8]> = msh.split(|b| *b == sep).collect();
    // fields[0] is "MSH", fields[1] the encoding characters (MSH-2), so MSH-n is fields[n-1]
    let f = fields.get(17)?;
    if !f.is_ascii() {
        return None;
    }
    let rep = msh.get(5).copied().unwrap_or(b'~');
    let first = f.split(|b| *b == rep).next().unwrap_or(&[]);
    Some(String::from_utf8_lossy(first).into_owned())
}

/// Decode a message as MSH-18 says and read its header.
pub fn decode(bytes: &[u8]) -> Result<Inbound, Nak> {
    if bytes.len() > MAX_MESSAGE {
        return Err(Nak { reject: true, ..Nak::general(100, format!("message of {} bytes: at most {MAX_MESSAGE}", bytes.len())) });
    }
    if !bytes.starts_with(b"MSH") {
        return Err(Nak { reject: true, ..Nak::at(100, "MSH", 0, None, "the message does not start with an MSH segment") });
    }
    let declared = raw_msh18(bytes).unwrap_or_default();
    let charset = match Charset::from_msh18(&declared) {
        Some(Some(c)) => c,
        Some(None) if std::str::from_utf8(bytes).is_ok() => Charset::Utf8,
        Some(None) => Charset::Gb18030,
        None => {
            return Err(Nak::at(
                103,
                "MSH",
                18,
                None,
                format!("character set {declared:?} is not one readhub reads: send UNICODE UTF-8 or GB 18030-2000"),
            ))
        }
    };
    let (text, _, bad) = charset.encoding().decode(bytes);
    if bad {
        return Err(Nak::at(102, "MSH", 18, None, format!("the message is not valid {} as MSH-18 says", charset.msh18())));
    }
    let text = text.into_owned();
    let header = {
        let msg = parse(&text)?;
        let msh = msg.segment("MSH").ok_or_else(|| Nak::at(100, "MSH", 0, None, "no MSH segment"))?;
        let f = |n: usize| msh.field(n).map(|f| f.raw_value().to_string()).unwrap_or_default();
        let c = |n: usize, k: usize| msh.field(n).and_then(|f| f.component(k)).map(|c| c.raw_value().to_string()).unwrap_or_default();
        Header {
            sending_application: c(3, 1),
            sending_facility: c(4, 1),
            receiving_application: c(5, 1),
            receiving_facility: c(6, 1),
            message_type: c(9, 1),
            trigger_event: c(9, 2),
            control_id: f(10),
            processing_id: c(11, 1),
            version: c(12, 1),
            charset_field: declared,
        }
    };
    if header.control_id.is_empty() {
        return Err(Nak::at(101, "MSH", 10, None, "MSH-10 (message control ID) is empty"));
    }
    Ok(Inbound { text, charset, header })
}

/// Parse the structure (segments separated by CR; LF tolerated).
pub fn parse(text: &str) -> Result<Message<'_>, Nak> {
    let text = text.trim_end_matches(['\r', '\n']);
    // hl7-parser has panicked on input it should refuse (its escape decoder did); a message
    // from a peer must never end the connection's task without its NAK
    match std::panic::catch_unwind(|| Message::parse_with_lenient_newlines(text, true)) {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(Nak { reject: true, ..Nak::general(100, format!("the message cannot be parsed: {e}")) }),
        Err(_) => Err(Nak { reject: true, ..Nak::general(100, "the message cannot be parsed") }),
    }
}

/// A value as read from a message: escape sequences (HL7 v2 2.7) replaced. Written here
/// rather than taken from hl7-parser, whose decoder slices strings by byte and panics on
/// Chinese text next to an escape. Unknown escapes (character-set switches, highlighting)
/// are dropped; an unterminated escape is kept as written.
pub fn unescape(v: &str, seps: &Separators) -> String {
    let esc = seps.escape;
    if !v.contains(esc) {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(k) = rest.find(esc) {
        out.push_str(&rest[..k]);
        let after = &rest[k + esc.len_utf8()..];
        let Some(end) = after.find(esc) else {
            out.push_str(&rest[k..]);
            return out;
        };
        let code = &after[..end];
        match code {
            "F" => out.push(seps.field),
            "S" => out.push(seps.component),
            "T" => out.push(seps.subcomponent),
            "R" => out.push(seps.repetition),
            "E" => out.push(esc),
            ".br" => out.push('\n'),
            c if c.starts_with('X') && c.len() % 2 == 1 => {
                let bytes: Option<Vec<u8>> = (1..c.len()).step_by(2).map(|i| c.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
                if let Some(b) = bytes {
                    out.push_str(&String::from_utf8_lossy(&b));
                }
            }
            _ => {}
        }
        rest = &after[end + esc.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// A value as written in a message: HL7 delimiters escaped, line breaks as `\.br\`.
pub fn escape(v: &str) -> String {
    let seps = Separators::default();
    let mut out = String::with_capacity(v.len());
    for (k, line) in v.split('\n').enumerate() {
        if k > 0 {
            out.push_str("\\.br\\");
        }
        out.push_str(&seps.encode(line.trim_end_matches('\r')).to_string());
    }
    out
}

/// An HL7 timestamp (YYYYMMDDHHMMSS+ZZZZ) of a unix-ms instant at a UTC offset.
pub fn timestamp(at_ms: i64, utc_offset_hours: i32) -> String {
    let offset = chrono::FixedOffset::east_opt(utc_offset_hours * 3600).unwrap_or(chrono::FixedOffset::east_opt(0).expect("zero offset"));
    let t = chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default().with_timezone(&offset);
    t.format("%Y%m%d%H%M%S%z").to_string()
}

/// Who readhub is in the messages it writes (MSH-3, MSH-4).
#[derive(Debug, Clone)]
pub struct Us {
    pub application: String,
    pub facility: String,
    pub utc_offset_hours: i32,
}

/// An MSH segment from readhub to `to_app`/`to_facility`.
pub fn msh(us: &Us, to_app: &str, to_fac: &str, kind: &str, control_id: &str, charset: Charset, now_ms: i64) -> String {
    format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||{kind}|{}|P|2.5.1||||||{}",
        escape(&us.application),
        escape(&us.facility),
        escape(to_app),
        escape(to_fac),
        timestamp(now_ms, us.utc_offset_hours),
        escape(control_id),
        charset.msh18()
    )
}

/// The acknowledgement of `inbound`: AA, or AE/AR with an ERR segment saying where and why.
pub fn ack(us: &Us, inbound: &Header, charset: Charset, outcome: &Result<String, Nak>, now_ms: i64) -> Vec<u8> {
    let trigger = if inbound.trigger_event.is_empty() { String::new() } else { format!("^{}", inbound.trigger_event) };
    let kind = format!("ACK{trigger}^ACK");
    let control = format!("ACK{}", now_ms);
    let mut segs = vec![msh(us, &inbound.sending_application, &inbound.sending_facility, &kind, &control, charset, now_ms)];
    match outcome {
        Ok(text) => segs.push(format!("MSA|AA|{}|{}", escape(&inbound.control_id), escape(text))),
        Err(nak) => {
            let code = if nak.reject { "AR" } else { "AE" };
            segs.push(format!("MSA|{code}|{}|{}", escape(&inbound.control_id), escape(&truncate(&nak.text, 80))));
            segs.push(format!(
                "ERR||{}|{}^{}^HL70357|E||||{}",
                nak.location.as_deref().unwrap_or(""),
                nak.code,
                nak.code_text(),
                escape(&nak.text)
            ));
        }
    }
    charset.encode(&(segs.join("\r") + "\r"))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gb18030_as_msh18_says() {
        let text = "MSH|^~\\&|HIS|T1|READHUB|HUB|20261202||ORM^O01|42|P|2.5|||||CHN|GB 18030-2000\rPID|||P1||张^三\r";
        let bytes = encoding_rs::GB18030.encode(text).0;
        let m = decode(&bytes).unwrap();
        assert_eq!(m.charset, Charset::Gb18030);
        assert!(m.text.contains("张^三"));
        assert_eq!(m.header.sending_application, "HIS");
        assert_eq!(m.header.message_type, "ORM");
        assert_eq!(m.header.trigger_event, "O01");
        assert_eq!(m.header.control_id, "42");
    }

    #[test]
    fn no_msh18_utf8_or_gbk() {
        let text = "MSH|^~\\&|HIS|T1|||20261202||ORM^O01|7|P|2.3\rPID|||P1||李^四\r";
        assert_eq!(decode(text.as_bytes()).unwrap().charset, Charset::Utf8);
        let gbk = encoding_rs::GBK.encode(text).0;
        let m = decode(&gbk).unwrap();
        assert_eq!(m.charset, Charset::Gb18030);
        assert!(m.text.contains("李^四"));
    }

    #[test]
    fn refusals_name_the_place() {
        assert_eq!(decode(b"PID|||1").unwrap_err().location.as_deref(), Some("MSH^1^0"));
        let e = decode(b"MSH|^~\\&|HIS|T1|||20261202||ORM^O01||P|2.5").unwrap_err();
        assert_eq!((e.code, e.location.as_deref()), (101, Some("MSH^1^10")));
        let e = decode(b"MSH|^~\\&|HIS|T1|||20261202||ORM^O01|1|P|2.5|||||CHN|EBCDIC").unwrap_err();
        assert_eq!((e.code, e.location.as_deref()), (103, Some("MSH^1^18")));
    }

    #[test]
    fn escapes_delimiters_and_lines() {
        assert_eq!(escape("a|b^c\nd"), "a\\F\\b\\S\\c\\.br\\d");
        let seps = Separators::default();
        assert_eq!(unescape("咳嗽两周 \\T\\ 发热\\.br\\次行", &seps), "咳嗽两周 & 发热\n次行");
        assert_eq!(unescape("a\\X414243\\b\\", &seps), "aABCb\\");
        assert_eq!(unescape(&escape("x|y^z&w~v\\u\n"), &seps), "x|y^z&w~v\\u\n");
    }
}
