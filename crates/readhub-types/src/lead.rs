//! ECG lead names: the one rule that turns what a file calls a lead ("Lead II",
//! "II (Einthoven)", "MDC_ECG_LEAD_AVR", "avr") into the usual label (I, II, III, aVR, aVL,
//! aVF, V1 … V6). Used by the DICOM waveform decoder and by the readers of carts' files.

/// The usual label of a lead name; a name that is none of the twelve is kept as it is.
pub fn lead_label(name: &str) -> String {
    const KNOWN: [&str; 12] = ["aVR", "aVL", "aVF", "III", "II", "I", "V1", "V2", "V3", "V4", "V5", "V6"];
    let n = name.trim();
    let n = n.strip_prefix("MDC_ECG_LEAD_").or_else(|| n.strip_prefix("Lead ")).or_else(|| n.strip_prefix("lead ")).unwrap_or(n);
    let first = n.split([' ', '(', ',']).next().unwrap_or(n);
    KNOWN.iter().find(|k| k.eq_ignore_ascii_case(first)).map_or_else(|| n.to_string(), |k| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_names_of_every_source() {
        for (name, label) in [
            ("Lead I", "I"),
            ("Lead aVR", "aVR"),
            ("II (Einthoven)", "II"),
            ("V6", "V6"),
            ("MDC_ECG_LEAD_AVR", "aVR"),
            ("MDC_ECG_LEAD_III", "III"),
            ("avl", "aVL"),
            ("Pleth", "Pleth"),
            ("MDC_ECG_LEAD_V3R", "V3R"),
        ] {
            assert_eq!(lead_label(name), label, "{name}");
        }
    }
}
