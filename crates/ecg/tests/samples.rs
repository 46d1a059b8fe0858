//! The real sample files (tests/fixtures/ecg, see its README): read, made DICOM, measured.
//! The samples against independent readers are checked in the end-to-end suite (with
//! Python's sierraecg and aecg); here: what readhub makes of them, and readhub's
//! measurements against the carts' own.

use std::path::PathBuf;

use ecg::measure;
use ecg::SourceFormat;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ecg").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn computed(r: &ecg::EcgRecord) -> measure::Computed {
    let uv: Vec<Vec<f32>> = r.leads.iter().map(|l| l.microvolts().map(|v| v as f32).collect()).collect();
    let leads: Vec<(&str, &[f32])> = r.leads.iter().zip(&uv).map(|(l, v)| (l.label.as_str(), v.as_slice())).collect();
    measure::compute(&leads, r.sampling_hz).unwrap()
}

#[test]
fn samples_are_read_and_measured_like_the_carts() {
    for name in ["philips-1.03-129DYPRG.xml", "philips-1.04-ZZDEMOPTONLY.xml", "philips-1.04.01-2020-5-18.xml", "hl7-aecg-example.xml"] {
        let bytes = fixture(name);
        let r = ecg::parse(&bytes, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = computed(&r);
        eprintln!("{name}: {:?} {} leads {} Hz {:.1} s patient {:?}", r.format, r.leads.len(), r.sampling_hz, r.seconds(), r.patient);
        eprintln!("  device {:?}", r.measurements);
        eprintln!("  statements {:?}", r.statements);
        eprintln!("  computed {c:?}");
        assert_eq!(r.leads.len(), 12, "{name}");
        let labels: Vec<&str> = r.leads.iter().map(|l| l.label.as_str()).collect();
        for l in ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V6"] {
            assert!(labels.contains(&l), "{name}: {labels:?}");
        }
        let dcm = ecg::dicom::to_part10(&r, &ecg::dicom::Source { bytes: &bytes, file_name: Some(name) }).unwrap();
        assert!(dcm.len() > bytes.len());
    }
}

#[test]
fn formats_are_told_apart_and_junk_is_refused_with_a_reason() {
    assert_eq!(ecg::sniff(&fixture("hl7-aecg-example.xml")), Some(SourceFormat::Hl7Aecg));
    assert_eq!(ecg::sniff(&fixture("philips-1.04-ZZDEMOPTONLY.xml")), Some(SourceFormat::PhilipsSierraXml));
    let e = ecg::parse(b"<html><body>no</body></html>", false).unwrap_err().to_string();
    assert!(e.contains("not an HL7 aECG"), "{e}");
    let mut cut = fixture("philips-1.03-129DYPRG.xml");
    cut.truncate(cut.len() / 2);
    let e = ecg::parse(&cut, false).unwrap_err().to_string();
    assert!(e.contains("Philips Sierra XML file cannot be read") && e.contains("XML"), "{e}");
}


