//! The XML side of the readers: bytes to text (UTF-8, UTF-16 with or without a BOM, or
//! the GB18030 family a Chinese cart may declare), a bounded tree (roxmltree: no DTD, a
//! node limit, no recursion), and lookups by local name so that namespaces ("urn:hl7-org:v3",
//! none, or a vendor's) do not matter.

use roxmltree::{Document, Node, ParsingOptions};

/// Nodes a document may have: a 10 s 12-lead aECG has a few thousand; 2 million leaves
/// room for long rhythm strips and bounds memory at a few hundred MB in the worst case.
const NODES_LIMIT: u32 = 2_000_000;

pub fn decode_text(bytes: &[u8]) -> Result<String, String> {
    let (enc, body) = if let Some((enc, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        (enc, &bytes[bom..])
    } else if bytes.len() >= 2 && bytes[0] == b'<' && bytes[1] == 0 {
        (encoding_rs::UTF_16LE, bytes)
    } else if bytes.len() >= 2 && bytes[0] == 0 && bytes[1] == b'<' {
        (encoding_rs::UTF_16BE, bytes)
    } else {
        (declared(bytes).unwrap_or(encoding_rs::UTF_8), bytes)
    };
    let (text, _, bad) = enc.decode(body);
    if bad && enc == encoding_rs::UTF_8 {
        // a cart that writes GBK without saying so: the usual case in China
        let (text, _, bad) = encoding_rs::GB18030.decode(body);
        if !bad {
            return Ok(text.into_owned());
        }
        return Err("the text is neither UTF-8 nor GB18030".into());
    }
    Ok(text.into_owned())
}

/// The encoding an XML declaration names, if it is one of the single-byte-compatible ones.
fn declared(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = &bytes[..bytes.len().min(200)];
    let head = std::str::from_utf8(head).ok().or_else(|| std::str::from_utf8(&head[..head.iter().position(|b| *b > 127)?]).ok())?;
    let decl = head.strip_prefix("<?xml")?;
    let decl = &decl[..decl.find("?>")?];
    let at = decl.find("encoding")?;
    let rest = decl[at + 8..].trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next()?;
    let label = rest[1..].split(quote).next()?;
    encoding_rs::Encoding::for_label(label.as_bytes()).filter(|e| e.is_ascii_compatible())
}

/// The root element's local name, from the start of a document (without parsing it all).
pub fn root_name(text: &str) -> Option<String> {
    let mut rest = text.trim_start_matches('\u{feff}');
    loop {
        let at = rest.find('<')?;
        rest = &rest[at + 1..];
        if rest.starts_with('?') || rest.starts_with('!') {
            // declaration, comment or DOCTYPE: skip to its end
            let end = if rest.starts_with("!--") { rest.find("-->")? + 3 } else { rest.find('>')? + 1 };
            rest = &rest[end..];
            continue;
        }
        let name: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/').collect();
        return Some(name.rsplit(':').next().unwrap_or(&name).to_string());
    }
}

pub fn parse(text: &str) -> Result<Document<'_>, String> {
    Document::parse_with_options(text, ParsingOptions { allow_dtd: false, nodes_limit: NODES_LIMIT }).map_err(|e| format!("not well-formed XML: {e}"))
}

/// The first child element with this local name.
pub fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.is_element() && c.tag_name().name() == name)
}

pub fn children<'a, 'i>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// A path of child names: `path(n, &["name", "lastname"])`.
pub fn path<'a, 'i>(n: Node<'a, 'i>, names: &[&str]) -> Option<Node<'a, 'i>> {
    names.iter().try_fold(n, |n, name| child(n, name))
}

/// The first descendant element with this local name (document order).
pub fn find<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.descendants().find(|c| c.is_element() && c.tag_name().name() == name)
}

pub fn find_all<'a, 'i>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.descendants().filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// The element's own text, trimmed; None when empty.
pub fn text(n: Node<'_, '_>) -> Option<String> {
    let t: String = n.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect();
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// An attribute by local name, trimmed; None when empty.
pub fn attr(n: Node<'_, '_>, name: &str) -> Option<String> {
    n.attributes().find(|a| a.name() == name).map(|a| a.value().trim().to_string()).filter(|v| !v.is_empty())
}

pub fn number(s: Option<String>) -> Option<f64> {
    s.and_then(|s| s.trim().parse::<f64>().ok()).filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_names_and_encodings() {
        assert_eq!(root_name("<?xml version=\"1.0\"?><!-- c --><hl7:AnnotatedECG xmlns:hl7=\"x\">").as_deref(), Some("AnnotatedECG"));
        let utf16: Vec<u8> = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-16\"?><restingecgdata/>".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        let t = decode_text(&utf16).unwrap();
        assert_eq!(root_name(&t).as_deref(), Some("restingecgdata"));
        let (gbk, _, _) = encoding_rs::GBK.encode("<?xml version=\"1.0\" encoding=\"GBK\"?><a>张三</a>");
        assert!(decode_text(&gbk).unwrap().contains("张三"));
        // GBK with no declaration is recognised too
        let (gbk, _, _) = encoding_rs::GBK.encode("<a>李四</a>");
        assert!(decode_text(&gbk).unwrap().contains("李四"));
    }

    #[test]
    fn dtd_and_entity_bombs_are_refused() {
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x \"xx\"><!ENTITY y \"&x;&x;\">]><a>&y;</a>";
        assert!(parse(bomb).is_err());
    }
}
