//! Person names (PS3.5 6.2.1): the one rule for making a DICOM PN from the names other
//! systems send (HL7 XPN repetitions, FHIR HumanNames).

/// A PN from name groups, each already `family^given^…`: an ASCII one is the alphabetic
/// group, a non-ASCII (Chinese) one the ideographic group: `Zhang^San=张^三`. A name given only
/// in Chinese is the first group (what modalities in China show).
pub fn from_groups<I: IntoIterator<Item = String>>(groups: I) -> String {
    let groups: Vec<String> = groups.into_iter().filter(|g| !g.is_empty()).collect();
    let alpha = groups.iter().find(|g| g.is_ascii());
    let ideo = groups.iter().find(|g| !g.is_ascii());
    match (alpha, ideo) {
        (Some(a), Some(i)) => format!("{a}={i}"),
        (Some(a), None) => a.clone(),
        (None, Some(i)) => i.clone(),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabetic_then_ideographic() {
        assert_eq!(from_groups(["张^三".to_string(), "Zhang^San".to_string()]), "Zhang^San=张^三");
        assert_eq!(from_groups(["王^五".to_string()]), "王^五");
        assert_eq!(from_groups([String::new()]), "");
    }
}
