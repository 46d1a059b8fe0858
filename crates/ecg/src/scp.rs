//! SCP-ECG (EN 1064 / ISO 11073-91064), **experimental**: off unless
//! `ecg_scp_experimental` is set, because no independent SCP-ECG reader or sample file could
//! be found to check this one against (see the note of issue 13); its test files are made by
//! a writer in the test suite that follows the standard on its own.
//!
//! What is read: section 0 (pointers), 1 (patient and acquisition tags), 2 (Huffman tables:
//! the default table or the file's own, without table switching), 3 (leads), 6 (rhythm data:
//! raw 16-bit values or Huffman codes, as values, first or second differences). Refused with
//! a reason: reference-beat subtraction (sections 4/5), bimodal compression.
//!
//! Bounded: every offset and length is checked against the file; the decoded samples per
//! lead are capped at [`MAX_SAMPLES`](crate::record::MAX_SAMPLES).

use crate::record::{digits, lead_label, Device, EcgRecord, Filters, Lead, Patient, Sex, SourceFormat};
use crate::FormatError;

const F: SourceFormat = SourceFormat::ScpEcg;

fn bad(reason: impl Into<String>) -> FormatError {
    FormatError::malformed(F, reason)
}

fn unsupported(reason: &str) -> FormatError {
    FormatError::Unsupported { format: F, reason: format!("{reason} is not supported yet / 暂不支持") }
}

struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn slice(&self, at: usize, len: usize, what: &str) -> Result<&'a [u8], FormatError> {
        at.checked_add(len)
            .and_then(|end| self.0.get(at..end))
            .ok_or_else(|| bad(format!("{what} runs past the end of the file ({len} bytes at {at})")))
    }

    fn u8(&self, at: usize, what: &str) -> Result<u8, FormatError> {
        Ok(self.slice(at, 1, what)?[0])
    }

    fn u16(&self, at: usize, what: &str) -> Result<u16, FormatError> {
        let b = self.slice(at, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, at: usize, what: &str) -> Result<u32, FormatError> {
        let b = self.slice(at, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A section's body (after its 16-byte header), by section number.
struct Sections<'a> {
    bodies: Vec<(u16, &'a [u8])>,
}

impl<'a> Sections<'a> {
    fn get(&self, id: u16) -> Option<&'a [u8]> {
        self.bodies.iter().find(|(i, _)| *i == id).map(|(_, b)| *b)
    }
}

fn sections(data: &[u8]) -> Result<Sections<'_>, FormatError> {
    let b = Bytes(data);
    // the record: CRC (2), length (4); section 0 starts at byte 6
    let len = b.u32(2, "the record length")? as usize;
    if len > data.len() || len < 6 + 16 {
        return Err(bad(format!("the record says it is {len} bytes, the file has {}", data.len())));
    }
    let s0_len = b.u32(6 + 4, "section 0's length")? as usize;
    if &data[6 + 10..6 + 16] != b"SCPECG" {
        return Err(bad("section 0 is not marked SCPECG"));
    }
    let pointers = b.slice(6 + 16, s0_len.saturating_sub(16), "section 0's pointers")?;
    let mut bodies = Vec::new();
    for p in pointers.chunks_exact(10).take(64) {
        let id = u16::from_le_bytes([p[0], p[1]]);
        let slen = u32::from_le_bytes([p[2], p[3], p[4], p[5]]) as usize;
        let index = u32::from_le_bytes([p[6], p[7], p[8], p[9]]) as usize;
        if id == 0 || slen == 0 || index == 0 {
            continue;
        }
        // the index is 1-based from the start of the record
        let sec = b.slice(index - 1, slen, &format!("section {id}"))?;
        if slen < 16 {
            return Err(bad(format!("section {id} is {slen} bytes, shorter than its header")));
        }
        let stated = u16::from_le_bytes([sec[2], sec[3]]);
        if stated != id {
            return Err(bad(format!("the pointer to section {id} points at section {stated}")));
        }
        bodies.push((id, &sec[16..]));
    }
    Ok(Sections { bodies })
}

/// Section 1: tag (1 byte), length (2), value; tag 255 ends it.
fn header(body: &[u8]) -> (Patient, Option<String>, Device, Filters) {
    let mut p = Patient::default();
    let (mut last, mut first) = (None, None);
    let (mut date, mut time) = (None, None);
    let mut device = Device::default();
    let mut filters = Filters::default();
    let text = |v: &[u8]| {
        let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
        let s = String::from_utf8(v[..end].to_vec()).unwrap_or_else(|_| encoding_rs::GB18030.decode(&v[..end]).0.into_owned());
        Some(s.trim().to_string()).filter(|s| !s.is_empty())
    };
    let mut at = 0;
    while at + 3 <= body.len() {
        let tag = body[at];
        let len = u16::from_le_bytes([body[at + 1], body[at + 2]]) as usize;
        if tag == 255 {
            break;
        }
        let Some(v) = body.get(at + 3..at + 3 + len) else { break };
        match tag {
            0 => last = text(v),
            1 => first = text(v),
            2 => p.id = text(v),
            5 if v.len() >= 4 => {
                let y = u16::from_le_bytes([v[0], v[1]]);
                if y > 0 {
                    p.birth_date = Some(format!("{y:04}{:02}{:02}", v[2], v[3]));
                }
            }
            8 if !v.is_empty() => p.sex = match v[0] { 1 => Some(Sex::Male), 2 => Some(Sex::Female), _ => None },
            14 if v.len() >= 36 => {
                // acquiring device: … manufacturer code at byte 17; model at 8..14 (text)
                device.model = text(&v[8..14]);
            }
            15 => device.institution = text(v),
            25 if v.len() >= 4 => date = Some(format!("{:04}{:02}{:02}", u16::from_le_bytes([v[0], v[1]]), v[2], v[3])),
            26 if v.len() >= 3 => time = Some(format!("{:02}{:02}{:02}", v[0], v[1], v[2])),
            27 if v.len() >= 2 => filters.low_hz = Some(u16::from_le_bytes([v[0], v[1]]) as f64 / 100.0).filter(|f| *f > 0.0),
            28 if v.len() >= 2 => filters.high_hz = Some(u16::from_le_bytes([v[0], v[1]]) as f64).filter(|f| *f > 0.0),
            _ => {}
        }
        at += 3 + len;
    }
    if last.is_some() || first.is_some() {
        p.name = Some(format!("{}^{}", last.unwrap_or_default(), first.unwrap_or_default()).trim_end_matches('^').to_string());
    }
    let acquired = date.map(|d| format!("{d}{}", time.unwrap_or_default())).map(|s| digits(&s));
    (p, acquired, device, filters)
}

/// One Huffman code: `prefix_bits` bits of `code` (MSB first) stand for `value`, or, when
/// `total_bits` is longer, the following bits hold the value itself (two's complement).
#[derive(Clone, Copy)]
struct Code {
    prefix_bits: u8,
    total_bits: u8,
    value: i32,
    code: u32,
}

/// The default table (EN 1064, annex C): 0, ±1 … ±8 by prefix, then 8- and 16-bit literals.
fn default_table() -> Vec<Code> {
    let mut t = vec![Code { prefix_bits: 1, total_bits: 1, value: 0, code: 0 }];
    for k in 1..=8u8 {
        // k ones then 0, then the sign bit: 10x, 110x, 1110x, …
        let ones = (1u32 << k) - 1;
        let bits = k + 2;
        t.push(Code { prefix_bits: bits, total_bits: bits, value: k as i32, code: ones << 2 });
        t.push(Code { prefix_bits: bits, total_bits: bits, value: -(k as i32), code: (ones << 2) | 1 });
    }
    t.push(Code { prefix_bits: 10, total_bits: 18, value: 0, code: 0b11_1111_1110 });
    t.push(Code { prefix_bits: 10, total_bits: 26, value: 0, code: 0b11_1111_1111 });
    // the ±8 codes are 10 bits: 1111111100 and 1111111101 (ones << 2 for k = 8 is 10 bits)
    t
}

/// The file's own table (the first of section 2), when it is not the default.
fn file_table(body: &[u8]) -> Result<Option<Vec<Code>>, FormatError> {
    let b = Bytes(body);
    let n = b.u16(0, "section 2's table count")?;
    if n == 19999 {
        return Ok(Some(default_table()));
    }
    if n == 0 {
        return Ok(None);
    }
    if n > 1 {
        return Err(unsupported("SCP-ECG with several Huffman tables (table switching)"));
    }
    let count = b.u16(2, "section 2's code count")? as usize;
    if count == 0 || count > 256 {
        return Err(bad(format!("a Huffman table of {count} codes")));
    }
    let mut t = Vec::with_capacity(count);
    for k in 0..count {
        let at = 4 + k * 9;
        let prefix_bits = b.u8(at, "a Huffman code")?;
        let total_bits = b.u8(at + 1, "a Huffman code")?;
        let switch = b.u8(at + 2, "a Huffman code")?;
        let value = i16::from_le_bytes([b.u8(at + 3, "a Huffman code")?, b.u8(at + 4, "a Huffman code")?]) as i32;
        // the base code is stored bit-reversed
        let reversed = b.u32(at + 5, "a Huffman code")?;
        if switch != 1 {
            return Err(unsupported("SCP-ECG Huffman table switching"));
        }
        if prefix_bits == 0 || prefix_bits > 32 || total_bits < prefix_bits || total_bits - prefix_bits > 16 {
            return Err(bad(format!("a Huffman code of {prefix_bits} prefix bits and {total_bits} bits")));
        }
        let code = reversed.reverse_bits() >> (32 - prefix_bits as u32);
        t.push(Code { prefix_bits, total_bits, value, code });
    }
    Ok(Some(t))
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(b as u32)
    }

    fn bits(&mut self, n: u8) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }
}

fn huffman(data: &[u8], table: &[Code], n: usize) -> Result<Vec<i32>, String> {
    let mut bits = Bits { data, pos: 0 };
    let mut out = Vec::with_capacity(n);
    let longest = table.iter().map(|c| c.prefix_bits).max().unwrap_or(1);
    while out.len() < n {
        let (mut acc, mut len) = (0u32, 0u8);
        let code = loop {
            let Some(b) = bits.bit() else {
                return Err(format!("the Huffman data ends after {} of {n} samples", out.len()));
            };
            acc = (acc << 1) | b;
            len += 1;
            if let Some(c) = table.iter().find(|c| c.prefix_bits == len && c.code == acc) {
                break *c;
            }
            if len >= longest {
                return Err(format!("sample {}: no Huffman code matches", out.len() + 1));
            }
        };
        let v = if code.total_bits > code.prefix_bits {
            let extra = code.total_bits - code.prefix_bits;
            let raw = bits.bits(extra).ok_or_else(|| format!("the Huffman data ends inside sample {}", out.len() + 1))?;
            // two's complement of `extra` bits
            let shift = 32 - extra as u32;
            ((raw << shift) as i32) >> shift
        } else {
            code.value
        };
        out.push(v);
    }
    Ok(out)
}

pub fn read(bytes: &[u8]) -> Result<EcgRecord, FormatError> {
    let s = sections(bytes)?;
    let (patient, acquired_at, device, filters) = s.get(1).map(header).unwrap_or_default();
    let s3 = s.get(3).ok_or_else(|| bad("section 3 (the leads) is missing"))?;
    let b3 = Bytes(s3);
    let nleads = b3.u8(0, "section 3's lead count")? as usize;
    let flags = b3.u8(1, "section 3's flags")?;
    if flags & 1 != 0 && s.get(4).is_some() {
        return Err(unsupported("SCP-ECG with reference-beat subtraction"));
    }
    if nleads == 0 || nleads > crate::record::MAX_LEADS {
        return Err(bad(format!("{nleads} leads")));
    }
    let mut leads = Vec::with_capacity(nleads);
    for k in 0..nleads {
        let at = 2 + k * 9;
        let start = b3.u32(at, "a lead definition")?;
        let end = b3.u32(at + 4, "a lead definition")?;
        let id = b3.u8(at + 8, "a lead definition")?;
        let n = (end as i64 - start as i64 + 1).max(0) as usize;
        if n == 0 || n > crate::record::MAX_SAMPLES {
            return Err(bad(format!("lead {k}: samples {start} to {end}")));
        }
        leads.push((scp_lead(id), n));
    }
    let s6 = s.get(6).ok_or_else(|| bad("section 6 (the rhythm data) is missing"))?;
    let b6 = Bytes(s6);
    let avm_nv = b6.u16(0, "section 6's amplitude multiplier")? as f64;
    let interval_us = b6.u16(2, "section 6's sample interval")? as f64;
    let difference = b6.u8(4, "section 6's difference flag")?;
    let bimodal = b6.u8(5, "section 6's bimodal flag")?;
    if bimodal != 0 {
        return Err(unsupported("SCP-ECG bimodal compression"));
    }
    if !(avm_nv > 0.0) || !(interval_us > 0.0) {
        return Err(bad(format!("amplitude {avm_nv} nV, sample interval {interval_us} µs")));
    }
    let table = match s.get(2) {
        Some(body) => file_table(body)?,
        None => None,
    };
    let mut at = 6 + 2 * nleads;
    let mut out = Vec::with_capacity(nleads);
    for (k, (label, n)) in leads.into_iter().enumerate() {
        let len = b6.u16(6 + 2 * k, "section 6's lead lengths")? as usize;
        let data = b6.slice(at, len, &format!("lead {label}'s data"))?;
        at += len;
        let mut v: Vec<i32> = match &table {
            Some(t) => huffman(data, t, n).map_err(|e| bad(format!("lead {label}: {e}")))?,
            None => {
                if data.len() < 2 * n {
                    return Err(bad(format!("lead {label}: {} bytes for {n} samples", data.len())));
                }
                data.chunks_exact(2).take(n).map(|c| i16::from_le_bytes([c[0], c[1]]) as i32).collect()
            }
        };
        match difference {
            0 => {}
            1 => {
                for i in 1..v.len() {
                    v[i] += v[i - 1];
                }
            }
            2 => {
                for i in 2..v.len() {
                    v[i] += 2 * v[i - 1] - v[i - 2];
                }
            }
            d => return Err(bad(format!("difference encoding {d}"))),
        }
        out.push(Lead { label, codes: v, scale_uv: avm_nv / 1000.0, offset_uv: 0.0 });
    }
    let mut record = EcgRecord {
        format: F,
        patient,
        acquired_at,
        accession_number: None,
        device,
        sampling_hz: 1e6 / interval_us,
        leads: out,
        filters,
        measurements: Vec::new(),
        statements: Vec::new(),
    };
    crate::record::derive_limb_leads(&mut record.leads);
    record.validate()
}

/// SCP-ECG lead identifiers (EN 1064 table 10) for the common leads.
fn scp_lead(id: u8) -> String {
    let name = match id {
        1 => "I",
        2 => "II",
        3 => "V1",
        4 => "V2",
        5 => "V3",
        6 => "V4",
        7 => "V5",
        8 => "V6",
        61 => "III",
        62 => "aVR",
        63 => "aVL",
        64 => "aVF",
        other => return format!("Lead {other}"),
    };
    lead_label(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_is_prefix_free_and_decodes_its_own_codes() {
        let t = default_table();
        assert_eq!(t.len(), 19);
        for a in &t {
            for b in &t {
                if std::ptr::eq(a, b) || a.prefix_bits > b.prefix_bits {
                    continue;
                }
                let top = b.code >> (b.prefix_bits - a.prefix_bits);
                assert!(a.prefix_bits == b.prefix_bits && a.code != b.code || top != a.code || std::ptr::eq(a, b), "{:b} is a prefix of {:b}", a.code, b.code);
            }
        }
        // 0 | 100 (1) | 101 (-1) | 1111111110 + 8 bits (-100) | 1111111111 + 16 bits (1000)
        let mut bits = String::from("0100101");
        bits += "1111111110";
        bits += &format!("{:08b}", (-100i8) as u8);
        bits += "1111111111";
        bits += &format!("{:016b}", 1000u16);
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let bytes: Vec<u8> = bits.as_bytes().chunks(8).map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()).collect();
        assert_eq!(huffman(&bytes, &t, 5).unwrap(), vec![0, 1, -1, -100, 1000]);
        // five bits of padding decode as five zeros; a sixth sample more is past the end
        assert!(huffman(&bytes, &t, 11).unwrap_err().contains("ends"));
    }
}
