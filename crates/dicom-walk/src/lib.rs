//! An incremental walk over the element headers of an incoming data set.
//!
//! It is fed the data set bytes as they stream in (from P-DATA or an HTTP body) and:
//! - keeps only the *header* part (everything before the first top-level bulk element such as
//!   Pixel Data, Waveform Sequence or Encapsulated Document), so memory stays bounded whatever
//!   the instance size;
//! - checks every declared length against a limit *before* anything allocates it: dicom-object
//!   pre-allocates declared lengths, and a 674-byte file can make it allocate 3.6 GB
//!   (STACK-FACTS §2);
//! - keeps walking (without retaining) to the end, so a truncated value or an unterminated
//!   sequence is caught and the instance refused rather than stored half;
//! - remembers where the top-level Specific Character Set (0008,0005) is, so the indexer can
//!   decode text itself (see `charset`).
//!
//! The element headers themselves are decoded by dicom-encoding; this module only follows
//! lengths and nesting. Deflated data sets are inflated with flate2 on the way in.

use std::io::Write;

use dicom_core::header::{HasLength, Header};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::decode::explicit_be::ExplicitVRBigEndianDecoder;
use dicom_encoding::decode::explicit_le::ExplicitVRLittleEndianDecoder;
use dicom_encoding::decode::implicit_le::ImplicitVRLittleEndianDecoder;
use dicom_encoding::decode::Decode;
use dicom_encoding::transfer_syntax::{Codec, Endianness, TransferSyntax};
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// The three element encodings a data set can use (the concrete decoders are `Send`, the
/// boxed `DynDecoder` is not, and the walk lives inside async tasks).
enum HdrDecoder {
    ImplicitLe(ImplicitVRLittleEndianDecoder<StandardDataDictionary>),
    ExplicitLe(ExplicitVRLittleEndianDecoder),
    ExplicitBe(ExplicitVRBigEndianDecoder),
}

impl HdrDecoder {
    fn for_ts(ts: &TransferSyntax) -> Self {
        if ts.uid() == IMPLICIT_VR_LITTLE_ENDIAN {
            HdrDecoder::ImplicitLe(Default::default())
        } else if ts.endianness() == Endianness::Big {
            HdrDecoder::ExplicitBe(Default::default())
        } else {
            HdrDecoder::ExplicitLe(Default::default())
        }
    }

    fn decode_header(
        &self,
        src: &mut &[u8],
    ) -> dicom_encoding::decode::Result<(dicom_core::DataElementHeader, usize)> {
        match self {
            HdrDecoder::ImplicitLe(d) => d.decode_header(src),
            HdrDecoder::ExplicitLe(d) => d.decode_header(src),
            HdrDecoder::ExplicitBe(d) => d.decode_header(src),
        }
    }
}

const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// Why a data set was refused by the walk.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("unsupported transfer syntax {0}")]
    UnsupportedTransferSyntax(String),
    #[error("malformed at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    #[error("truncated: the data set ends inside an element or sequence (byte {offset})")]
    Truncated { offset: u64 },
    #[error("the attributes before the pixel data exceed {limit} bytes (element {tag} at byte {offset} declares {len} bytes)")]
    HeaderTooLarge {
        limit: usize,
        tag: String,
        offset: u64,
        len: u64,
    },
    #[error("sequences are nested more than {limit} levels deep (at byte {offset}): refused, as no real object needs that")]
    TooDeep { limit: usize, offset: u64 },
    #[error("deflated data set could not be inflated: {0}")]
    Inflate(String),
    /// the Basic Offset Table of encapsulated pixel data does not point at the fragments
    // the reason comes first: a C-STORE Error Comment keeps only 64 characters
    #[error("{0}: the film is damaged; send it again from the original")]
    OffsetTable(String),
}

/// Containers we are inside of. `end` is the absolute end offset of a defined-length one.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// a sequence: contains items, ends with a sequence delimiter or at `end`
    Seq { implicit: bool, end: Option<u64>, cut_from: Option<u64> },
    /// an item of a sequence: contains elements, ends with an item delimiter or at `end`
    Item { implicit: bool, end: Option<u64> },
    /// encapsulated pixel data or another undefined-length non-SQ value: fragments
    Fragments,
}

impl Frame {
    fn end(&self) -> Option<u64> {
        match self {
            Frame::Seq { end, .. } | Frame::Item { end, .. } => *end,
            Frame::Fragments => None,
        }
    }
}

/// The first top-level bulk element, as the walk saw it.
struct Bulk {
    tag: Option<Tag>,
    len: Option<u64>,
    fragments: u64,
    offset_table: usize,
}

/// The outcome of a complete walk.
#[derive(Clone)]
pub struct SniffedHeader {
    /// The header part of the data set (inflated if deflated), with the top-level Specific
    /// Character Set element cut out, ready for `InMemDicomObject::read_dataset_with_ts`.
    pub bytes: Vec<u8>,
    /// The transfer syntax `bytes` is encoded in.
    pub parse_ts: &'static TransferSyntax,
    /// The declared Specific Character Set terms (0008,0005), as sent.
    pub charset_terms: Vec<String>,
    /// Whether the data set has a bulk element (pixel data, waveform, document).
    pub has_bulk: bool,
    /// The first top-level bulk element, where the header was cut.
    pub bulk_tag: Option<Tag>,
    /// Its declared length in bytes; None when undefined (encapsulated pixel data).
    pub bulk_len: Option<u64>,
    /// When encapsulated: its fragments (the items after the Basic Offset Table).
    pub bulk_fragments: u64,
    /// When encapsulated: the entries of its Basic Offset Table (0 when empty). Each was
    /// checked to point at the first byte of a fragment.
    pub offset_table_entries: usize,
}

struct Walker {
    decoder: HdrDecoder,
    implicit_decoder: HdrDecoder,
    ts_implicit: bool,
    /// bytes not yet consumed; `win[0]` is at absolute offset `win_start`
    win: Vec<u8>,
    win_start: u64,
    /// the next header starts at this absolute offset
    pos: u64,
    stack: Vec<Frame>,
    /// absolute offset of the first top-level bulk element (the end of the header)
    cut: Option<u64>,
    cut_tag: Option<Tag>,
    /// the declared length of that element (None: undefined, i.e. encapsulated)
    cut_len: Option<u64>,
    /// the items of that element when encapsulated (Basic Offset Table and fragments)
    cut_items: u64,
    header: Vec<u8>,
    /// the Basic Offset Table of top-level encapsulated pixel data, once read
    offset_table: Option<Vec<u32>>,
    /// the next table entry no fragment start has matched yet
    offset_next: usize,
    /// bytes of fragment items after the table so far (where the next fragment starts)
    fragment_bytes: u64,
    charset: Option<(u64, u64, Vec<u8>)>,
    /// header byte ranges to cut before dicom-rs parses it (undefined-length UN elements,
    /// which dicom-object 0.10 reads as explicit VR and so misreads lengths)
    cuts: Vec<(u64, u64)>,
    max_header: usize,
    /// sequences we are inside of, and how deep they may nest: every parser after this one
    /// (dicom-object, the DICOM JSON writer, transcoding) recurses per level
    seq_depth: usize,
    max_depth: usize,
    error: Option<HeaderError>,
}

/// How deep sequences may nest by default (real objects stay under ten levels).
pub const DEFAULT_MAX_SEQUENCE_DEPTH: usize = 64;

/// The deepest nesting any part of readhub accepts or opens, whatever is configured:
/// dicom-object's reader and writer and the DICOM JSON writer recurse once per level, and
/// at about a thousand levels they overflow a worker thread's stack.
pub const MAX_SEQUENCE_DEPTH_LIMIT: usize = 128;

/// Where the data set of a Part-10 file starts (after preamble, `DICM` and the File Meta
/// group), found by walking the group's explicit VR little-endian element headers.
/// None when the file is not Part-10, the group is cut short or larger than 64 KiB, an
/// element has a VR the group never uses, or the group length (0002,0000) disagrees with
/// the elements: dicom-object's meta reader trusts those and was made (by fuzzing) to
/// allocate 2.7 GB for a 500-byte file.
pub fn part10_dataset_offset(file: &[u8]) -> Option<usize> {
    if file.len() < 132 || &file[128..132] != b"DICM" {
        return None;
    }
    let mut at = 132usize;
    let mut group_length: Option<(usize, usize)> = None; // (declared, where it counts from)
    let end = |at: usize, group_length: Option<(usize, usize)>| match group_length {
        Some((declared, from)) if at - from != declared => None,
        _ => Some(at),
    };
    loop {
        if at - 132 > 64 * 1024 {
            return None;
        }
        // the file may end right after the group (a file meta group alone, as ingest checks it)
        let Some(head) = file.get(at..at + 8) else {
            return if at == file.len() { end(at, group_length) } else { None };
        };
        if u16::from_le_bytes([head[0], head[1]]) != 0x0002 {
            return end(at, group_length);
        }
        if !matches!(&head[4..6], b"UL" | b"OB" | b"UI" | b"SH" | b"AE" | b"UR" | b"UN" | b"LO" | b"CS" | b"ST") {
            return None;
        }
        if at == 132 && u16::from_le_bytes([head[2], head[3]]) == 0x0000 && &head[4..8] == b"UL\x04\x00" {
            let v = file.get(at + 8..at + 12)?;
            group_length = Some((u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize, at + 12));
        }
        let long = matches!(&head[4..6], b"OB" | b"OW" | b"OF" | b"SQ" | b"UT" | b"UN" | b"UC" | b"UR" | b"OD" | b"OL" | b"OV");
        let (len, value_at) = if long {
            let l = file.get(at + 8..at + 12)?;
            (u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize, at + 12)
        } else {
            (usize::from(u16::from_le_bytes([head[6], head[7]])), at + 8)
        };
        at = value_at.checked_add(len).filter(|&end| end <= file.len())?;
    }
}

const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIM: Tag = Tag(0xFFFE, 0xE00D);
const SEQ_DELIM: Tag = Tag(0xFFFE, 0xE0DD);
const CHARSET: Tag = Tag(0x0008, 0x0005);

/// The size of one value of a binary VR (its lengths must be multiples of it).
fn binary_size(vr: VR) -> Option<u64> {
    match vr {
        VR::SV | VR::UV | VR::FD | VR::OD | VR::OV => Some(8),
        VR::FL | VR::OF | VR::UL | VR::SL | VR::OL | VR::AT => Some(4),
        VR::US | VR::SS => Some(2),
        _ => None,
    }
}

/// Top-level elements that start the bulk part of a data set; the index needs nothing after.
fn is_bulk(tag: Tag) -> bool {
    tag.0 >= 0x7FE0
        || tag == Tag(0x5400, 0x0100) // Waveform Sequence
        || tag == Tag(0x0042, 0x0011) // Encapsulated Document
        || tag == Tag(0x5600, 0x0020) // Spectroscopy Data
}

impl Walker {
    /// The innermost defined end of the containers we are in (nothing may cross it).
    fn limit(&self) -> Option<u64> {
        self.stack.iter().rev().find_map(|f| f.end())
    }

    fn pop(&mut self) {
        if let Some(Frame::Seq { cut_from, .. }) = self.stack.pop() {
            self.seq_depth -= 1;
            if let Some(from) = cut_from {
                self.cuts.push((from, self.pos));
            }
        }
    }

    /// Enter a sequence, unless that nests deeper than allowed.
    fn push_seq(&mut self, frame: Frame, at: u64) -> bool {
        if self.seq_depth >= self.max_depth {
            self.error = Some(HeaderError::TooDeep { limit: self.max_depth, offset: at });
            return false;
        }
        self.seq_depth += 1;
        self.stack.push(frame);
        true
    }

    fn advance(&mut self, at_end: bool) {
        while self.error.is_none() {
            // leave the defined-length containers that end here
            while let Some(end) = self.stack.last().and_then(|f| f.end()) {
                if self.pos == end {
                    self.pop();
                } else if self.pos > end {
                    self.fail(self.pos, "an element runs past the end of its sequence or item");
                    return;
                } else {
                    break;
                }
            }
            let avail_end = self.win_start + self.win.len() as u64;
            if self.pos > avail_end {
                return; // still skipping a value
            }
            let off = (self.pos - self.win_start) as usize;
            let rest = &self.win[off..];
            if rest.is_empty() || (rest.len() < 12 && !at_end) {
                return;
            }
            let frame = self.stack.last().copied();
            let implicit = match frame {
                Some(Frame::Seq { implicit, .. }) | Some(Frame::Item { implicit, .. }) => implicit,
                Some(Frame::Fragments) => true,
                None => false,
            };
            let mut cursor: &[u8] = rest;
            let decoded = if implicit && !self.ts_implicit {
                self.implicit_decoder.decode_header(&mut cursor)
            } else {
                self.decoder.decode_header(&mut cursor)
            };
            let (hdr, n) = match decoded {
                Ok(x) => x,
                Err(e) => {
                    self.error = Some(if at_end && rest.len() < 12 {
                        HeaderError::Truncated { offset: self.pos }
                    } else {
                        HeaderError::Malformed {
                            offset: self.pos,
                            reason: e.to_string(),
                        }
                    });
                    return;
                }
            };
            let start = self.pos;
            self.pos += n as u64;
            let tag = hdr.tag();
            let len = hdr.length();
            let limit = self.limit();
            let fits = |pos: u64, len: u64| limit.is_none_or(|end| pos + len <= end);

            // delimiters and items first: they are structure, not attributes
            match tag {
                ITEM => {
                    match frame {
                        Some(Frame::Seq { implicit, .. }) => {
                            let end = len.get().map(|l| self.pos + u64::from(l));
                            if !end.is_none_or(|e| fits(self.pos, e - self.pos)) {
                                self.fail(start, "an item runs past the end of its sequence");
                                return;
                            }
                            self.stack.push(Frame::Item { implicit, end });
                        }
                        Some(Frame::Fragments) => {
                            let l = u64::from(len.get().unwrap_or(0));
                            if len.is_undefined() {
                                self.fail(start, "a pixel data fragment has undefined length");
                                return;
                            }
                            if self.stack.len() == 1 && self.cut.is_some() {
                                // an item of the top-level encapsulated pixel data (the
                                // first is the Basic Offset Table)
                                if self.cut_items == 0 {
                                    if !self.read_offset_table(start, l, at_end) {
                                        return;
                                    }
                                } else if !self.match_fragment(start, l) {
                                    return;
                                }
                                self.cut_items += 1;
                            }
                            self.pos += l;
                        }
                        _ => {
                            self.fail(start, "item outside of a sequence");
                            return;
                        }
                    }
                    continue;
                }
                ITEM_DELIM => {
                    if !matches!(frame, Some(Frame::Item { end: None, .. })) {
                        self.fail(start, "item delimiter outside of an undefined-length item");
                        return;
                    }
                    self.pop();
                    continue;
                }
                SEQ_DELIM => {
                    if !matches!(frame, Some(Frame::Seq { end: None, .. }) | Some(Frame::Fragments)) {
                        self.fail(start, "sequence delimiter outside of an undefined-length sequence");
                        return;
                    }
                    self.pop();
                    continue;
                }
                _ => {}
            }
            if matches!(frame, Some(Frame::Seq { .. }) | Some(Frame::Fragments)) {
                self.fail(start, &format!("element {tag} where an item was expected"));
                return;
            }
            let top_level = self.stack.is_empty();
            if top_level && self.cut.is_none() && is_bulk(tag) {
                self.cut = Some(start);
                self.cut_tag = Some(tag);
                self.cut_len = len.get().map(u64::from);
                let cut_off = (start - self.win_start) as usize;
                self.header = self.win[..cut_off].to_vec();
            }
            let vr = hdr.vr();
            if len.is_undefined() {
                if vr == VR::SQ || vr == VR::UN || (implicit || self.ts_implicit) && !matches!(vr, VR::OB | VR::OW) {
                    // an undefined-length UN holds implicit VR LE items (PS3.5 6.2.2); the
                    // index never needs it, and dicom-object 0.10 misreads it, so it is cut
                    // from the header copy when nothing of defined length encloses it
                    let explicit_un = vr == VR::UN && !implicit && !self.ts_implicit;
                    let cut_from = if explicit_un && self.cut.is_none() {
                        if limit.is_some() {
                            self.fail(start, "an undefined-length UN inside a defined-length sequence is not supported");
                            return;
                        }
                        Some(start)
                    } else {
                        None
                    };
                    if !self.push_seq(Frame::Seq { implicit: implicit || vr == VR::UN, end: None, cut_from }, start) {
                        return;
                    }
                } else {
                    self.stack.push(Frame::Fragments);
                }
                continue;
            }
            let vlen = u64::from(len.0);
            if !fits(self.pos, vlen) {
                self.fail(start, &format!("element {tag} declares {vlen} bytes, more than its enclosing sequence or item holds"));
                return;
            }
            if self.cut.is_none() && (self.pos + vlen) as usize > self.max_header {
                self.error = Some(HeaderError::HeaderTooLarge {
                    limit: self.max_header,
                    tag: tag.to_string(),
                    offset: start,
                    len: vlen,
                });
                return;
            }
            if vr == VR::SQ {
                // descend: nested lengths are checked against this sequence's end
                if !self.push_seq(Frame::Seq { implicit, end: Some(self.pos + vlen), cut_from: None }, start) {
                    return;
                }
                continue;
            }
            // dicom-parser reads a binary value as whole numbers of its size and leaves the
            // rest unread: a length that is not a multiple of it puts every later element
            // out of step (found by fuzzing: an SV of 28 bytes, then a "length" of 1.4 GB
            // that dicom-object allocated). Such a value is not valid DICOM anyway.
            if let Some(size) = binary_size(vr) {
                if vlen % size != 0 {
                    self.fail(start, &format!("element {tag} ({vr:?}) is {vlen} bytes, not a multiple of {size}"));
                    return;
                }
            }
            if top_level && tag == CHARSET && self.cut.is_none() {
                self.charset = Some((start, self.pos + vlen, Vec::new()));
            }
            self.pos += vlen;
        }
    }

    /// Read the Basic Offset Table (the first item of encapsulated pixel data, at `start`,
    /// value `len` bytes). Waits (returns false with `pos` back at `start`) until the whole
    /// table has arrived; it is at most 4 bytes per frame and counts against `max_header`.
    fn read_offset_table(&mut self, start: u64, len: u64, at_end: bool) -> bool {
        if !len.is_multiple_of(4) || len as usize > self.max_header {
            self.error = Some(HeaderError::OffsetTable(format!("Basic Offset Table is {len} bytes, not 4 per frame")));
            return false;
        }
        let value_start = self.pos;
        let avail_end = self.win_start + self.win.len() as u64;
        if value_start + len > avail_end {
            if at_end {
                self.error = Some(HeaderError::Truncated { offset: avail_end });
            } else {
                self.pos = start; // wait for the rest of the table
            }
            return false;
        }
        let off = (value_start - self.win_start) as usize;
        let table: Vec<u32> = self.win[off..off + len as usize]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if table.first().is_some_and(|&first| first != 0) {
            self.error = Some(HeaderError::OffsetTable(format!("Basic Offset Table starts at {}, not 0", table[0])));
            return false;
        }
        if table.windows(2).any(|w| w[1] <= w[0]) {
            self.error = Some(HeaderError::OffsetTable("Basic Offset Table entries do not increase".into()));
            return false;
        }
        self.offset_table = Some(table);
        true
    }

    /// A fragment item starts at `start` with `len` value bytes: consume the table entries
    /// that point at it; an entry pointing inside a fragment is refused.
    fn match_fragment(&mut self, start: u64, len: u64) -> bool {
        let at = self.fragment_bytes;
        if let Some(table) = &self.offset_table {
            match table.get(self.offset_next) {
                Some(&entry) if u64::from(entry) == at => self.offset_next += 1,
                Some(&entry) if u64::from(entry) < at => {
                    self.error = Some(HeaderError::OffsetTable(format!(
                        "Offset Table entry {} points inside a fragment (offset {entry}, byte {start})",
                        self.offset_next + 1
                    )));
                    return false;
                }
                _ => {}
            }
        }
        self.fragment_bytes = at + 8 + len;
        true
    }

    fn fail(&mut self, offset: u64, reason: &str) {
        self.error = Some(HeaderError::Malformed {
            offset,
            reason: reason.to_string(),
        });
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.win.extend_from_slice(bytes);
        self.advance(false);
        if self.cut.is_some() {
            // tail mode: drop what has been walked over
            let consumed = (self.pos.min(self.win_start + self.win.len() as u64) - self.win_start) as usize;
            self.win.drain(..consumed);
            self.win_start += consumed as u64;
        } else if self.win.len() > self.max_header {
            self.error = Some(HeaderError::HeaderTooLarge {
                limit: self.max_header,
                tag: "(header)".into(),
                offset: self.pos,
                len: self.win.len() as u64,
            });
        }
    }

    fn finish(mut self) -> Result<(Vec<u8>, Vec<u8>, Bulk), HeaderError> {
        self.advance(true);
        if let Some(e) = self.error {
            return Err(e);
        }
        let end = self.win_start + self.win.len() as u64;
        if self.pos != end || !self.stack.is_empty() {
            return Err(HeaderError::Truncated { offset: end });
        }
        let table = self.offset_table.as_deref().unwrap_or_default();
        if let Some(&entry) = table.get(self.offset_next) {
            return Err(HeaderError::OffsetTable(format!(
                "Offset Table entry {} points outside the data (offset {entry} of {} bytes)",
                self.offset_next + 1,
                self.fragment_bytes
            )));
        }
        let bulk = Bulk {
            tag: self.cut_tag,
            len: self.cut_len,
            fragments: self.cut_items.saturating_sub(1),
            offset_table: table.len(),
        };
        let mut header = if self.cut.is_some() { self.header } else { self.win };
        let mut charset_value = Vec::new();
        let mut cuts = self.cuts.clone();
        if let Some((start, stop, _)) = self.charset {
            // value = bytes after the element header; the header is 8 bytes in every
            // little/big-endian form of a CS element (explicit: tag+VR+2-byte length)
            charset_value = header[start as usize + 8..stop as usize].to_vec();
            cuts.push((start, stop));
        }
        // cut from the back so earlier offsets stay valid
        cuts.retain(|(_, stop)| *stop as usize <= header.len());
        cuts.sort_by_key(|c| std::cmp::Reverse(c.0));
        for (start, stop) in cuts {
            header.drain(start as usize..stop as usize);
        }
        Ok((header, charset_value, bulk))
    }
}

impl std::fmt::Debug for SniffedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniffedHeader")
            .field("bytes", &self.bytes.len())
            .field("parse_ts", &self.parse_ts.uid())
            .field("charset_terms", &self.charset_terms)
            .field("has_bulk", &self.has_bulk)
            .finish()
    }
}

/// Feeds a [`Walker`], inflating first where the transfer syntax is deflated.
pub struct HeaderSniffer {
    inner: Sink,
    parse_ts: &'static TransferSyntax,
}

enum Sink {
    Plain(Box<Walker>),
    Deflated(Box<flate2::write::DeflateDecoder<WalkerWriter>>),
}

struct WalkerWriter(Walker);
impl Write for WalkerWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.feed(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl HeaderSniffer {
    /// Start a walk for a data set in transfer syntax `ts_uid`, keeping at most `max_header`
    /// bytes of attributes before the bulk data.
    pub fn new(ts_uid: &str, max_header: usize) -> Result<Self, HeaderError> {
        Self::with_max_depth(ts_uid, max_header, DEFAULT_MAX_SEQUENCE_DEPTH)
    }

    /// [`HeaderSniffer::new`], refusing sequences nested deeper than `max_depth` levels.
    pub fn with_max_depth(ts_uid: &str, max_header: usize, max_depth: usize) -> Result<Self, HeaderError> {
        let ts_uid = ts_uid.trim_end_matches(['\0', ' ']);
        let ts = TransferSyntaxRegistry
            .get(ts_uid)
            .ok_or_else(|| HeaderError::UnsupportedTransferSyntax(ts_uid.to_string()))?;
        let explicit_le = TransferSyntaxRegistry
            .get(EXPLICIT_VR_LITTLE_ENDIAN)
            .expect("explicit VR LE is always registered");
        let deflated = matches!(ts.codec(), Codec::Dataset(_));
        let parse_ts = if deflated { explicit_le } else { ts };
        let walker = Walker {
            decoder: HdrDecoder::for_ts(parse_ts),
            implicit_decoder: HdrDecoder::ImplicitLe(Default::default()),
            ts_implicit: parse_ts.uid() == IMPLICIT_VR_LITTLE_ENDIAN,
            win: Vec::new(),
            win_start: 0,
            pos: 0,
            stack: Vec::new(),
            cut: None,
            cut_tag: None,
            cut_len: None,
            cut_items: 0,
            header: Vec::new(),
            offset_table: None,
            offset_next: 0,
            fragment_bytes: 0,
            charset: None,
            cuts: Vec::new(),
            max_header,
            seq_depth: 0,
            max_depth,
            error: None,
        };
        let inner = if deflated {
            Sink::Deflated(Box::new(flate2::write::DeflateDecoder::new(WalkerWriter(walker))))
        } else {
            Sink::Plain(Box::new(walker))
        };
        Ok(HeaderSniffer { inner, parse_ts })
    }

    /// Feed the next bytes of the data set. Returns the error as soon as the walk fails, so
    /// the sender can be answered without reading the rest.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), HeaderError> {
        match &mut self.inner {
            Sink::Plain(w) => {
                w.feed(bytes);
                w.error.clone().map_or(Ok(()), Err)
            }
            Sink::Deflated(d) => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    match d.write(rest) {
                        // the deflate stream has ended; what follows is the pad byte that
                        // makes the value even (PS3.5 A.5), or junk we do not need
                        Ok(0) => break,
                        Ok(n) => rest = &rest[n..],
                        Err(e) => return Err(HeaderError::Inflate(e.to_string())),
                    }
                }
                d.get_ref().0.error.clone().map_or(Ok(()), Err)
            }
        }
    }

    /// The data set has ended: check it was complete and return its header.
    pub fn finish(self) -> Result<SniffedHeader, HeaderError> {
        let walker = match self.inner {
            Sink::Plain(w) => *w,
            Sink::Deflated(d) => {
                d.finish()
                    .map_err(|e| HeaderError::Inflate(e.to_string()))?
                    .0
            }
        };
        let (bytes, charset_value, bulk) = walker.finish()?;
        let charset_terms = String::from_utf8_lossy(&charset_value)
            .split('\\')
            .map(|s| s.trim_matches([' ', '\0']).to_string())
            .collect::<Vec<_>>();
        let charset_terms = if charset_terms.iter().all(|s| s.is_empty()) {
            Vec::new()
        } else {
            charset_terms
        };
        Ok(SniffedHeader {
            bytes,
            parse_ts: self.parse_ts,
            charset_terms,
            has_bulk: bulk.tag.is_some(),
            bulk_tag: bulk.tag,
            bulk_len: bulk.len,
            bulk_fragments: bulk.fragments,
            offset_table_entries: bulk.offset_table,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

    fn sample(rel: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data").join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// (transfer syntax, data set bytes) of a Part-10 file.
    fn dataset(file: &[u8]) -> (String, Vec<u8>) {
        let meta = dicom_object::meta::FileMetaTable::from_reader(&file[128..]).unwrap();
        let group_len = u32::from_le_bytes(file[140..144].try_into().unwrap()) as usize;
        (meta.transfer_syntax().trim_end_matches('\0').to_string(), file[144 + group_len..].to_vec())
    }

    fn elem(g: u16, e: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(vr);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(value);
        out
    }

    fn walk(ts: &str, bytes: &[u8], chunk: usize) -> Result<SniffedHeader, HeaderError> {
        let mut s = HeaderSniffer::new(ts, 1 << 20)?;
        for c in bytes.chunks(chunk.max(1)) {
            s.feed(c)?;
        }
        s.finish()
    }

    /// `levels` sequences nested in each other (undefined lengths, or defined ones), then pixel data.
    fn nested(levels: usize, defined: bool) -> Vec<u8> {
        let mut inner: Vec<u8> = elem(0x0008, 0x0100, b"SH", b"T-D1100 ");
        for _ in 0..levels {
            let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
            if defined {
                item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
                item.extend_from_slice(&inner);
                inner = elem(0x0040, 0xA730, b"SQ", &item);
            } else {
                item.extend_from_slice(&[0xFF; 4]);
                item.extend_from_slice(&inner);
                item.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
                let mut seq = vec![0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
                seq.extend_from_slice(&item);
                seq.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
                inner = seq;
            }
        }
        let mut ds = elem(0x0008, 0x0060, b"CS", b"SR");
        ds.extend(inner);
        ds.extend(elem(0x7FE0, 0x0010, b"OB", &[0; 4]));
        ds
    }

    /// Encapsulated pixel data: a Basic Offset Table with `table` entries, then fragments of
    /// the given value lengths, then the sequence delimiter.
    fn encapsulated(table: &[u32], fragments: &[usize]) -> Vec<u8> {
        let mut ds = elem(0x0008, 0x0060, b"CS", b"CR");
        ds.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        let item = |ds: &mut Vec<u8>, value: &[u8]| {
            ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            ds.extend_from_slice(&(value.len() as u32).to_le_bytes());
            ds.extend_from_slice(value);
        };
        item(&mut ds, &table.iter().flat_map(|e| e.to_le_bytes()).collect::<Vec<_>>());
        for &len in fragments {
            item(&mut ds, &vec![0xAB; len]);
        }
        ds.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        ds
    }

    #[test]
    fn basic_offset_table_points_at_fragments() {
        // two frames, the first in two fragments: 0 and 8+100+8+50 = 166
        let ok = walk(EXPLICIT_VR_LITTLE_ENDIAN, &encapsulated(&[0, 166], &[100, 50, 70]), 4096).unwrap();
        assert_eq!((ok.bulk_fragments, ok.offset_table_entries), (3, 2));
        // fed one byte at a time the table still arrives whole before it is read
        let ds = encapsulated(&[0, 166], &[100, 50, 70]);
        let mut s = HeaderSniffer::new(EXPLICIT_VR_LITTLE_ENDIAN, 4096).unwrap();
        ds.iter().for_each(|b| s.feed(std::slice::from_ref(b)).unwrap());
        assert_eq!(s.finish().unwrap().offset_table_entries, 2);
        // an empty table is allowed
        assert_eq!(walk(EXPLICIT_VR_LITTLE_ENDIAN, &encapsulated(&[], &[100]), 4096).unwrap().offset_table_entries, 0);
        for (table, why) in [
            (&[0u32, 5000][..], "outside"),
            (&[0, 100][..], "inside a fragment"),
            (&[8, 166][..], "not 0"),
            (&[0, 166, 166][..], "do not increase"),
        ] {
            match walk(EXPLICIT_VR_LITTLE_ENDIAN, &encapsulated(table, &[100, 50, 70]), 4096) {
                Err(e @ HeaderError::OffsetTable(_)) => assert!(e.to_string().contains(why), "{table:?}: {e}"),
                other => panic!("{table:?}: {:?}", other.map(|h| h.offset_table_entries)),
            }
        }
    }

    #[test]
    fn part10_data_set_offset() {
        let file = sample("pydicom/test_files/CT_small.dcm");
        let at = part10_dataset_offset(&file).unwrap();
        let group_len = u32::from_le_bytes(file[140..144].try_into().unwrap()) as usize;
        assert_eq!(at, 144 + group_len);
        assert_eq!(part10_dataset_offset(&file[..at]), Some(at), "the meta group alone");
        assert_eq!(part10_dataset_offset(&file[..150]), None, "cut inside the meta group");
        assert_eq!(part10_dataset_offset(b"not dicom"), None);
        // a group length that disagrees with the elements, and a VR the group never uses
        // (found by fuzzing: dicom-object then allocated 2.7 GB)
        let mut lying = file.clone();
        lying[140] = lying[140].wrapping_add(40);
        assert_eq!(part10_dataset_offset(&lying), None);
        let mut odd_vr = file.clone();
        let second = 144 + 4; // (0002,0001) OB's VR
        odd_vr[second..second + 2].copy_from_slice(b"UY");
        assert_eq!(part10_dataset_offset(&odd_vr), None);
    }

    #[test]
    fn sequences_nest_only_so_deep() {
        for defined in [false, true] {
            let ok = nested(DEFAULT_MAX_SEQUENCE_DEPTH, defined);
            assert!(walk(EXPLICIT_VR_LITTLE_ENDIAN, &ok, 4096).is_ok(), "64 levels are allowed (defined lengths: {defined})");
            for levels in [DEFAULT_MAX_SEQUENCE_DEPTH + 1, 1300] {
                let deep = nested(levels, defined);
                match walk(EXPLICIT_VR_LITTLE_ENDIAN, &deep, 4096) {
                    Err(HeaderError::TooDeep { limit: 64, .. }) => {}
                    other => panic!("{levels} levels (defined lengths: {defined}): {:?}", other.map(|h| h.bytes.len())),
                }
            }
        }
        let mut s = HeaderSniffer::with_max_depth(EXPLICIT_VR_LITTLE_ENDIAN, 1 << 20, 3).unwrap();
        let e = s.feed(&nested(4, false)).and_then(|_| s.finish()).err().unwrap();
        assert!(e.to_string().contains("nested more than 3 levels"), "{e}");
    }

    #[test]
    fn header_stops_at_pixel_data_and_is_the_same_whatever_the_chunking() {
        let (ts, ds) = dataset(&sample("pydicom-data/RG1_UNCR.dcm"));
        let whole = walk(&ts, &ds, ds.len()).unwrap();
        assert!(whole.has_bulk);
        assert!(whole.bytes.len() < 4096, "only the attributes are kept, not 7 MB of pixels");
        assert_eq!(whole.charset_terms, vec!["ISO_IR 100".to_string()]);
        for chunk in [1, 7, 4096] {
            let h = walk(&ts, &ds, chunk).unwrap();
            assert_eq!(h.bytes, whole.bytes, "chunk size {chunk}");
        }
        // what is kept parses, without the charset element (cut out for our own decoding)
        let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(&whole.bytes[..], whole.parse_ts).unwrap();
        assert!(obj.element_opt(dicom_dictionary_std::tags::SPECIFIC_CHARACTER_SET).unwrap().is_none());
        assert_eq!(obj.element(dicom_dictionary_std::tags::MODALITY).unwrap().to_str().unwrap().trim(), "CR");
    }

    #[test]
    fn every_transfer_syntax_sample_walks() {
        for f in [
            "pydicom-data/RG1_J2KR.dcm",
            "pydicom-data/emri_small_jpeg_ls_lossless.dcm",
            "pydicom-data/emri_small_RLE.dcm",
            "pydicom-data/OBXXXX1A_expb_2frame.dcm",
            "pydicom-data/color3d_jpeg_baseline.dcm",
            "pydicom/test_files/image_dfl.dcm",
            "pydicom/test_files/waveform_ecg.dcm",
            "pynetdicom/CTImageStorage.dcm",
            "debian-octave-dicom/US-PAL-8-10x-echo.dcm",
        ] {
            let (ts, ds) = dataset(&sample(f));
            let h = walk(&ts, &ds, 16 * 1024).unwrap_or_else(|e| panic!("{f}: {e}"));
            dicom_object::InMemDicomObject::read_dataset_with_ts(&h.bytes[..], h.parse_ts)
                .unwrap_or_else(|e| panic!("{f}: header does not parse: {e}"));
        }
    }

    #[test]
    fn truncated_values_and_sequences_are_caught() {
        let (ts, ds) = dataset(&sample("pynetdicom/CTImageStorage.dcm"));
        let err = walk(&ts, &ds[..ds.len() - 10], 4096).unwrap_err();
        assert!(matches!(err, HeaderError::Truncated { .. }), "{err}");
        // an undefined-length sequence that never ends
        let mut d = elem(0x0008, 0x0016, b"UI", b"1.2\0");
        d.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        let err = walk(EXPLICIT_LE, &d, 5).unwrap_err();
        assert!(matches!(err, HeaderError::Truncated { .. }), "{err}");
    }

    #[test]
    fn lengths_are_checked_before_anything_allocates_them() {
        // a defined-length sequence whose nested element claims more than the sequence holds
        let inner = elem(0x0008, 0x1150, b"UI", b"1.2\0");
        let mut bogus = inner.clone();
        bogus[6..8].copy_from_slice(&0xFFF0u16.to_le_bytes());
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(bogus.len() as u32).to_le_bytes());
        item.extend_from_slice(&bogus);
        let d = elem(0x0008, 0x1115, b"SQ", &item);
        let err = walk(EXPLICIT_LE, &d, 3).unwrap_err();
        assert!(matches!(err, HeaderError::Malformed { .. }), "{err}");
        // an element declaring more than the header limit, before any pixel data
        let mut d = elem(0x0008, 0x0016, b"UI", b"1.2\0");
        d.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        d.extend_from_slice(&0xE000_FFFEu32.to_le_bytes());
        let err = walk(EXPLICIT_LE, &d, 64).unwrap_err();
        assert!(matches!(err, HeaderError::HeaderTooLarge { .. }), "{err}");
    }

    #[test]
    fn the_674_byte_allocation_bomb_is_harmless() {
        // UN_sequence.dcm: an undefined-length UN whose implicit-VR items dicom-object 0.10
        // reads as explicit VR, finding a 3.7 GB length. The walk reads it correctly and
        // cuts it from the header, so the parse that follows allocates nothing large.
        let file = sample("pydicom/test_files/UN_sequence.dcm");
        let (ts, ds) = dataset(&file);
        let started = std::time::Instant::now();
        let h = walk(&ts, &ds, 100).unwrap();
        let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(&h.bytes[..], h.parse_ts).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // the data set is that one private element (4453,100C), as DCMTK reads it (CP-246)
        assert!(h.bytes.is_empty(), "{h:?}");
        assert_eq!(obj.iter().count(), 0);
    }

    #[test]
    fn garbage_is_malformed() {
        let garbage: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
        assert!(walk(EXPLICIT_LE, &garbage, 512).is_err());
        assert!(matches!(HeaderSniffer::new("1.2.3.4", 1024), Err(HeaderError::UnsupportedTransferSyntax(_))));
    }
}
