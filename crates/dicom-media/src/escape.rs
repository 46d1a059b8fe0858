//! HTML/XML text escaping for the pages and drawings we generate.

/// Escape text for an HTML or SVG text node or attribute value.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
