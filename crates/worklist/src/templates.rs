//! Report templates shipped by default, in Chinese and English: chest PA, extremity, and
//! 12-lead ECG. A template fills the draft's findings and impression; the reader edits.

use serde::Serialize;

/// A report template.
#[derive(Debug, Clone, Serialize)]
pub struct Template {
    pub id: &'static str,
    pub name_zh: &'static str,
    pub name_en: &'static str,
    /// modalities it fits (empty: any)
    pub modalities: &'static [&'static str],
    /// Body Part Examined values it fits (empty: any)
    pub body_parts: &'static [&'static str],
    pub findings_zh: &'static str,
    pub impression_zh: &'static str,
    pub findings_en: &'static str,
    pub impression_en: &'static str,
}

pub const TEMPLATES: &[Template] = &[
    Template {
        id: "chest-pa-normal",
        name_zh: "胸部正位片（未见异常）",
        name_en: "Chest PA (normal)",
        modalities: &["CR", "DX"],
        body_parts: &["CHEST", "THORAX", "LUNG"],
        findings_zh: "胸廓对称，气管居中。双肺纹理清晰，走行自然，肺野内未见明显实变及结节影。双肺门不大。\
心影大小、形态未见异常。双侧膈面光整，肋膈角锐利。所见骨质未见明显异常。",
        impression_zh: "胸部正位片未见明显异常。",
        findings_en: "The thorax is symmetric and the trachea midline. Lung markings are clear with no consolidation \
or nodule. The hila are not enlarged. The cardiac silhouette is normal in size and shape. The diaphragm is smooth \
and the costophrenic angles are sharp. No bony abnormality is seen.",
        impression_en: "Normal chest radiograph.",
    },
    Template {
        id: "extremity-normal",
        name_zh: "四肢关节平片（未见异常）",
        name_en: "Extremity radiograph (normal)",
        modalities: &["CR", "DX"],
        body_parts: &["HAND", "WRIST", "FOREARM", "ELBOW", "ARM", "SHOULDER", "FOOT", "ANKLE", "LEG", "KNEE", "HIP", "EXTREMITY", "FINGER", "TOE"],
        findings_zh: "所示诸骨骨质连续，未见明确骨折线及骨质破坏。关节间隙正常，关节面光整。周围软组织未见明显肿胀。",
        impression_zh: "所示骨关节未见明显异常。",
        findings_en: "The bones shown are intact with no fracture line or destruction. Joint spaces are preserved and \
articular surfaces smooth. No soft-tissue swelling.",
        impression_en: "No bony or joint abnormality.",
    },
    Template {
        id: "ecg-12-lead-normal",
        name_zh: "十二导联心电图（正常）",
        name_en: "12-lead ECG (normal)",
        modalities: &["ECG"],
        body_parts: &[],
        findings_zh: "窦性心律，心率 __ 次/分。PR 间期 __ ms，QRS 时限 __ ms，QT/QTc __/__ ms，电轴 __°。\
各导联 ST 段未见明显偏移，T 波未见异常。",
        impression_zh: "1. 窦性心律\n2. 正常心电图",
        findings_en: "Sinus rhythm, rate __ bpm. PR __ ms, QRS __ ms, QT/QTc __/__ ms, axis __°. No ST deviation; \
T waves normal.",
        impression_en: "1. Sinus rhythm\n2. Normal ECG",
    },
    Template {
        id: "ecg-sinus-bradycardia",
        name_zh: "窦性心动过缓",
        name_en: "Sinus bradycardia",
        modalities: &["ECG"],
        body_parts: &[],
        findings_zh: "窦性心律，心率 __ 次/分（<60 次/分）。PR 间期 __ ms，QRS 时限 __ ms，QT/QTc __/__ ms，电轴 __°。\
各导联 ST 段未见明显偏移。",
        impression_zh: "1. 窦性心动过缓",
        findings_en: "Sinus rhythm at __ bpm (<60). PR __ ms, QRS __ ms, QT/QTc __/__ ms, axis __°. No ST deviation.",
        impression_en: "1. Sinus bradycardia",
    },
    Template {
        id: "ecg-atrial-fibrillation",
        name_zh: "心房颤动",
        name_en: "Atrial fibrillation",
        modalities: &["ECG"],
        body_parts: &[],
        findings_zh: "P 波消失，代之以大小不等、形态各异的 f 波，RR 间期绝对不齐，平均心室率 __ 次/分。QRS 时限 __ ms，电轴 __°。",
        impression_zh: "1. 心房颤动（平均心室率 __ 次/分）",
        findings_en: "No P waves; fibrillatory waves; irregularly irregular RR, mean ventricular rate __ bpm. QRS __ ms, axis __°.",
        impression_en: "1. Atrial fibrillation (mean ventricular rate __ bpm)",
    },
    Template {
        id: "ecg-acute-inferior-stemi",
        name_zh: "急性下壁心肌梗死（危急值）",
        name_en: "Acute inferior STEMI (critical)",
        modalities: &["ECG"],
        body_parts: &[],
        findings_zh: "窦性心律，心率 __ 次/分。Ⅱ、Ⅲ、aVF 导联 ST 段抬高 __ mm，Ⅰ、aVL 导联 ST 段压低。",
        impression_zh: "1. 窦性心律\n2. 急性下壁心肌梗死（危急值，已电话通知）",
        findings_en: "Sinus rhythm at __ bpm. ST elevation __ mm in II, III, aVF with reciprocal depression in I, aVL.",
        impression_en: "1. Sinus rhythm\n2. Acute inferior STEMI (critical result, telephoned)",
    },
    Template {
        id: "ecg-complete-av-block",
        name_zh: "三度房室传导阻滞（危急值）",
        name_en: "Complete AV block (critical)",
        modalities: &["ECG"],
        body_parts: &[],
        findings_zh: "P 波与 QRS 波群无固定关系，心房率 __ 次/分，心室率 __ 次/分，QRS 时限 __ ms。",
        impression_zh: "1. 三度房室传导阻滞（危急值，已电话通知）",
        findings_en: "P waves and QRS complexes are dissociated; atrial rate __ bpm, ventricular rate __ bpm, QRS __ ms.",
        impression_en: "1. Complete (third-degree) AV block (critical result, telephoned)",
    },
    Template {
        id: "ecg-serial-comparison",
        name_zh: "与前次心电图比较",
        name_en: "Compared with the prior ECG",
        modalities: &["ECG"],
        body_parts: &[],
        findings_zh: "窦性心律，心率 __ 次/分。PR 间期 __ ms，QRS 时限 __ ms，QT/QTc __/__ ms，电轴 __°。\n\
与前次心电图（____-__-__）比较：__。",
        impression_zh: "1. 窦性心律\n2. 与前次心电图比较无明显变化",
        findings_en: "Sinus rhythm at __ bpm. PR __ ms, QRS __ ms, QT/QTc __/__ ms, axis __°.\nCompared with the prior ECG (____-__-__): __.",
        impression_en: "1. Sinus rhythm\n2. No significant change from the prior ECG",
    },
];

/// The templates that fit a study's modalities (`CR\DX`) and body part, most specific first.
pub fn matching(modalities: &str, body_part: Option<&str>) -> Vec<&'static Template> {
    let mods: Vec<&str> = modalities.split('\\').map(str::trim).filter(|m| !m.is_empty()).collect();
    let mut out: Vec<(u8, &'static Template)> = TEMPLATES
        .iter()
        .filter_map(|t| {
            let m = t.modalities.is_empty() || mods.is_empty() || t.modalities.iter().any(|x| mods.iter().any(|m| m.eq_ignore_ascii_case(x)));
            if !m {
                return None;
            }
            let part = body_part.map(str::trim).filter(|b| !b.is_empty());
            let b = match part {
                _ if t.body_parts.is_empty() => 1,
                Some(p) if t.body_parts.iter().any(|x| x.eq_ignore_ascii_case(p)) => 2,
                Some(_) => return None,
                None => 0,
            };
            Some((b, t))
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0));
    out.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_modality_and_body_part() {
        assert_eq!(matching("DX", Some("CHEST"))[0].id, "chest-pa-normal");
        assert_eq!(matching("CR", Some("KNEE"))[0].id, "extremity-normal");
        assert_eq!(matching("ECG", None)[0].id, "ecg-12-lead-normal");
        assert!(matching("CT", Some("HEAD")).is_empty());
        // no body part recorded: both radiograph templates are offered
        assert_eq!(matching("CR", None).len(), 2);
    }
}
