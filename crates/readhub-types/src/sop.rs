//! Facts about SOP classes that more than one crate needs.

use dicom_dictionary_std::uids;

/// Is this an ECG waveform SOP class (read in the ECG pool, drawn on the paper grid)?
pub fn is_ecg_waveform(sop_class_uid: &str) -> bool {
    matches!(
        sop_class_uid,
        uids::TWELVE_LEAD_ECG_WAVEFORM_STORAGE
            | uids::GENERAL_ECG_WAVEFORM_STORAGE
            | uids::AMBULATORY_ECG_WAVEFORM_STORAGE
            | uids::GENERAL32BIT_ECG_WAVEFORM_STORAGE
    )
}
