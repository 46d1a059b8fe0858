//! Text decoding for the character sets our sites use, into UTF-8.
//!
//! dicom-rs decodes with the *first* value of Specific Character Set only and maps
//! `ISO 2022 IR 58` to GBK without handling its escape sequences, and it cannot apply a
//! site's fallback for modalities that send no character set or mislabel GBK bytes as
//! ISO_IR 100. So the indexer reads text values as raw bytes (see `header`) and decodes them
//! here, around encoding_rs's decoders: no codec is written here, only the ISO 2022 code
//! extension switching (PS3.5 6.1.2.5) that picks which decoder a run of bytes goes to.

use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use encoding_rs::{Encoding, GB18030, GBK, UTF_8};

/// A character repertoire we can decode.
#[derive(Debug, Clone, PartialEq)]
pub enum Charset {
    /// ISO_IR 6, the default repertoire (ASCII)
    Ascii,
    /// ISO_IR 100, ISO 8859-1
    Latin1,
    /// ISO_IR 192
    Utf8,
    /// GB18030
    Gb18030,
    /// GBK, and GB2312 as used by ISO 2022 IR 58
    Gbk,
    /// anything else dicom-rs knows (Japanese, Korean, Cyrillic, …)
    Other(SpecificCharacterSet),
}

impl Charset {
    /// Parse one value of Specific Character Set (0008,0005), or a site's fallback setting.
    pub fn from_term(term: &str) -> Option<Charset> {
        let t = term.trim();
        Some(match t.to_ascii_uppercase().as_str() {
            "" | "ISO_IR 6" | "ISO 2022 IR 6" => Charset::Ascii,
            "ISO_IR 100" | "ISO 2022 IR 100" | "LATIN1" => Charset::Latin1,
            "ISO_IR 192" | "UTF-8" | "UTF8" => Charset::Utf8,
            "GB18030" => Charset::Gb18030,
            "GBK" | "GB2312" | "ISO 2022 IR 58" => Charset::Gbk,
            _ => return SpecificCharacterSet::from_code(t).map(Charset::Other),
        })
    }

    fn decode_strict(&self, bytes: &[u8]) -> Option<String> {
        match self {
            Charset::Ascii => bytes.is_ascii().then(|| latin1(bytes)),
            Charset::Latin1 => Some(latin1(bytes)),
            Charset::Utf8 => strict(UTF_8, bytes),
            Charset::Gb18030 => strict(GB18030, bytes),
            Charset::Gbk => strict(GBK, bytes),
            Charset::Other(cs) => cs.decode(bytes).ok(),
        }
    }

    fn decode_lossy(&self, bytes: &[u8]) -> String {
        match self {
            Charset::Ascii | Charset::Latin1 => latin1(bytes),
            Charset::Utf8 => UTF_8.decode_without_bom_handling(bytes).0.into_owned(),
            Charset::Gb18030 => GB18030.decode_without_bom_handling(bytes).0.into_owned(),
            Charset::Gbk => GBK.decode_without_bom_handling(bytes).0.into_owned(),
            Charset::Other(cs) => cs.decode(bytes).unwrap_or_else(|_| latin1(bytes)),
        }
    }
}

/// ISO 8859-1 maps every byte to the code point of the same number.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// The inverse of [`latin1`]: dicom-rs decoded a value as ISO 8859-1 (its default
/// repertoire), so each char is one original byte.
pub fn latin1_bytes(text: &str) -> Vec<u8> {
    text.chars().map(|c| (c as u32).min(0xFF) as u8).collect()
}

fn strict(enc: &'static Encoding, bytes: &[u8]) -> Option<String> {
    enc.decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
}


const ESC: u8 = 0x1B;

/// How a site wants text without (or with a wrong) character set read.
#[derive(Debug, Clone, Default)]
pub struct DecodePolicy {
    /// The site's fallback, applied when the data set declares no character set, or declares
    /// ISO_IR 6 / ISO_IR 100 while the bytes are not plain ASCII (GBK mislabelled as Latin-1).
    pub fallback: Option<Charset>,
}

/// Decode a text value's raw bytes to UTF-8 under the declared Specific Character Set terms.
pub fn decode(raw: &[u8], terms: &[String], policy: &DecodePolicy) -> String {
    let text = decode_untrimmed(raw, terms, policy);
    text.trim_end_matches([' ', '\0']).trim_start_matches(' ').to_string()
}

fn decode_untrimmed(raw: &[u8], terms: &[String], policy: &DecodePolicy) -> String {
    if raw.is_ascii() && !raw.contains(&ESC) {
        return latin1(raw);
    }
    let uses_2022 = terms.len() > 1 || terms.iter().any(|t| t.trim().starts_with("ISO 2022"));
    if uses_2022 && raw.contains(&ESC) {
        if let Some(s) = decode_iso2022(raw, terms) {
            return s;
        }
    }
    let declared = terms
        .iter()
        .find(|t| !t.trim().is_empty())
        .and_then(|t| Charset::from_term(t));
    match (&declared, &policy.fallback) {
        // nothing declared, or a single-byte Western set declared over non-ASCII bytes: the
        // site's fallback (GBK modalities that send nothing or claim ISO_IR 100) first
        (None | Some(Charset::Ascii) | Some(Charset::Latin1), Some(fb)) => fb
            .decode_strict(raw)
            .unwrap_or_else(|| declared.unwrap_or(Charset::Latin1).decode_lossy(raw)),
        // nothing declared and no fallback: UTF-8 if it is valid, else ISO 8859-1
        (None | Some(Charset::Ascii), None) => {
            Charset::Utf8.decode_strict(raw).unwrap_or_else(|| latin1(raw))
        }
        (Some(cs), _) => cs.decode_strict(raw).unwrap_or_else(|| {
            policy
                .fallback
                .as_ref()
                .and_then(|fb| fb.decode_strict(raw))
                .unwrap_or_else(|| cs.decode_lossy(raw))
        }),
    }
}

/// ISO 2022 code extension: G0 starts as ASCII, G1 as the first term's set; escape sequences
/// switch them. Returns None for an escape sequence we do not know, so the caller can fall
/// back to the declared set as a whole.
fn decode_iso2022(raw: &[u8], terms: &[String]) -> Option<String> {
    let initial_g1 = terms
        .first()
        .and_then(|t| Charset::from_term(t))
        .filter(|c| *c != Charset::Ascii);
    let mut g1 = initial_g1.clone();
    let mut out = String::with_capacity(raw.len());
    let mut run_start = 0;
    let mut i = 0;
    let flush = |out: &mut String, run: &[u8], g1: &Option<Charset>| {
        if run.is_empty() {
            return;
        }
        match g1 {
            Some(cs) if !run.is_ascii() => out.push_str(&cs.decode_lossy(run)),
            _ => out.push_str(&latin1(run)),
        }
    };
    while i < raw.len() {
        if raw[i] == ESC {
            flush(&mut out, &raw[run_start..i], &g1);
            let seq = &raw[i + 1..];
            let (len, designate) = if seq.starts_with(b"$)A") {
                (3, Some(Some(Charset::Gbk))) // GB 2312 into G1 (ISO 2022 IR 58)
            } else if seq.starts_with(b"(B") || seq.starts_with(b"(J") {
                (2, None) // ASCII (or JIS roman) into G0: G1 unchanged
            } else if seq.starts_with(b"-A") {
                (2, Some(Some(Charset::Latin1))) // ISO 8859-1 right half into G1
            } else {
                return None;
            };
            if let Some(d) = designate {
                g1 = d;
            }
            i += 1 + len;
            run_start = i;
            continue;
        }
        // PS3.5 6.1.2.5.3: component group and value delimiters reset to the initial state
        if raw[i] == b'=' || raw[i] == b'\\' || raw[i] == b'\r' || raw[i] == b'\n' {
            flush(&mut out, &raw[run_start..i], &g1);
            out.push(raw[i] as char);
            g1 = initial_g1.clone();
            i += 1;
            run_start = i;
            continue;
        }
        i += 1;
    }
    flush(&mut out, &raw[run_start..], &g1);
    Some(out)
}

/// Upper-cased search terms for a person name: the whole value and every non-empty
/// component group, so a query can match the alphabetic, ideographic or phonetic form.
pub fn person_name_terms(name: &str) -> Vec<String> {
    let mut terms = vec![name.to_uppercase()];
    let groups: Vec<&str> = name.split('=').collect();
    if groups.len() > 1 {
        for g in groups {
            let g = g.trim();
            if !g.is_empty() {
                terms.push(g.to_uppercase());
            }
        }
    }
    terms.retain(|t| !t.is_empty());
    terms.dedup();
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn gb18030_and_gbk_and_utf8() {
        let (gb, _, _) = GB18030.encode("Zhang^San=张^三");
        assert_eq!(decode(&gb, &t(&["GB18030"]), &DecodePolicy::default()), "Zhang^San=张^三");
        let (gbk, _, _) = GBK.encode("王^五");
        assert_eq!(decode(&gbk, &t(&["GBK"]), &DecodePolicy::default()), "王^五");
        assert_eq!(
            decode("李^四".as_bytes(), &t(&["ISO_IR 192"]), &DecodePolicy::default()),
            "李^四"
        );
        assert_eq!(decode(b"M\xfcller", &t(&["ISO_IR 100"]), &DecodePolicy::default()), "Müller");
    }

    #[test]
    fn iso_2022_ir_58_escape_sequences() {
        // PS3.5 Annex K example style: ASCII group, then GB2312 under ESC $ ) A
        let (g, _, _) = GBK.encode("张^三");
        let mut raw = b"Zhang^San=".to_vec();
        raw.extend_from_slice(b"\x1b$)A");
        raw.extend_from_slice(&g);
        assert_eq!(
            decode(&raw, &t(&["", "ISO 2022 IR 58"]), &DecodePolicy::default()),
            "Zhang^San=张^三"
        );
        // with an explicit return to ASCII inside the group
        let mut raw = b"\x1b$)A".to_vec();
        raw.extend_from_slice(&g);
        raw.extend_from_slice(b"\x1b(B^X");
        assert_eq!(decode(&raw, &t(&["ISO 2022 IR 6", "ISO 2022 IR 58"]), &DecodePolicy::default()), "张^三^X");
    }

    #[test]
    fn site_fallback_for_missing_or_mislabelled_charset() {
        let (gbk, _, _) = GBK.encode("赵^六");
        let policy = DecodePolicy { fallback: Some(Charset::Gbk) };
        assert_eq!(decode(&gbk, &[], &policy), "赵^六");
        assert_eq!(decode(&gbk, &t(&["ISO_IR 100"]), &policy), "赵^六");
        // without a fallback, mislabelled bytes come out as Latin-1 (nothing lost, just wrong)
        assert_ne!(decode(&gbk, &t(&["ISO_IR 100"]), &DecodePolicy::default()), "赵^六");
        // no declaration, no fallback, valid UTF-8: UTF-8
        assert_eq!(decode("钱^七".as_bytes(), &[], &DecodePolicy::default()), "钱^七");
    }

    #[test]
    fn name_terms_cover_each_group() {
        assert_eq!(
            person_name_terms("Zhang^San=张^三"),
            vec!["ZHANG^SAN=张^三".to_string(), "ZHANG^SAN".into(), "张^三".into()]
        );
        assert_eq!(person_name_terms("Doe^John"), vec!["DOE^JOHN".to_string()]);
    }
}
