//! Critical ECG criteria (心电图危急值): rules on the computed and device measurements and
//! on the device's statements. A rule that fires makes the item STAT and shows the reader a
//! suggested critical result with the rule's name; only a reader's confirmation sends
//! anything to the site.
//!
//! Defaults (configurable): heart rate < 40 or > 150 bpm, QTc ≥ 500 ms, and statements of
//! acute MI / STEMI, ventricular tachycardia or fibrillation, complete AV block, in English
//! or Chinese, unless negated ("no acute MI", "未见…").

use serde::{Deserialize, Serialize};

use crate::measure::Computed;
use crate::record::{DeviceMeasurement, MeasureKind};

/// The configurable thresholds and phrases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    pub heart_rate_below: f64,
    pub heart_rate_above: f64,
    pub qtc_at_least_ms: f64,
    /// (rule name, phrases): a statement containing any phrase (case-insensitive) fires it
    pub statements: Vec<StatementRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatementRule {
    pub name: String,
    pub phrases: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        let rule = |name: &str, phrases: &[&str]| StatementRule { name: name.into(), phrases: phrases.iter().map(|p| p.to_string()).collect() };
        Rules {
            heart_rate_below: 40.0,
            heart_rate_above: 150.0,
            qtc_at_least_ms: 500.0,
            statements: vec![
                rule(
                    "acute MI / STEMI 急性心肌梗死",
                    &["acute mi", "acute myocardial infarct", "stemi", "infarct, acute", "acute infarct", "acute st elevation", "急性心肌梗死", "急性心梗", "st段抬高型心肌梗死"],
                ),
                rule("ventricular tachycardia 室性心动过速", &["ventricular tachycardia", "v-tach", "vtach", "室性心动过速", "室速"]),
                rule("ventricular fibrillation 心室颤动", &["ventricular fibrillation", "v-fib", "vfib", "心室颤动", "室颤"]),
                rule(
                    "complete AV block 三度房室传导阻滞",
                    &["complete av block", "complete heart block", "third degree av block", "3rd degree av block", "third-degree av block", "三度房室传导阻滞", "完全性房室传导阻滞", "Ⅲ度房室传导阻滞", "iii度房室传导阻滞"],
                ),
            ],
        }
    }
}

/// One rule that fired: its name, and what was seen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    pub rule: String,
    pub evidence: String,
}

/// Words before a phrase that negate it.
const NEGATIONS: [&str; 8] = ["no ", "not ", "without ", "absence of ", "无", "未见", "排除", "否认"];

impl Rules {
    /// Check the values as they are: thresholds out of order are a configuration error.
    pub fn check(&self) -> Result<(), String> {
        if !(self.heart_rate_below < self.heart_rate_above) || !(self.qtc_at_least_ms > 0.0) {
            return Err(format!(
                "ecg_critical: heart_rate_below ({}) must be less than heart_rate_above ({}), and qtc_at_least_ms positive",
                self.heart_rate_below, self.heart_rate_above
            ));
        }
        Ok(())
    }

    pub fn evaluate(&self, computed: Option<&Computed>, device: &[DeviceMeasurement], statements: &[String]) -> Vec<Finding> {
        let mut out = Vec::new();
        let dev = |k: MeasureKind| device.iter().find(|m| m.kind == k).map(|m| m.value);
        // heart rate: the device's and readhub's; either one out of range fires (the reader decides)
        let rates = [("device", dev(MeasureKind::HeartRate)), ("computed", computed.map(|c| c.heart_rate_bpm))];
        if let Some((who, hr)) = rates.iter().find_map(|(w, v)| v.filter(|hr| *hr < self.heart_rate_below).map(|hr| (w, hr))) {
            out.push(Finding { rule: format!("heart rate < {} bpm 心率过缓", self.heart_rate_below), evidence: format!("{who} HR {hr:.0} bpm") });
        }
        if let Some((who, hr)) = rates.iter().find_map(|(w, v)| v.filter(|hr| *hr > self.heart_rate_above).map(|hr| (w, hr))) {
            out.push(Finding { rule: format!("heart rate > {} bpm 心率过速", self.heart_rate_above), evidence: format!("{who} HR {hr:.0} bpm") });
        }
        let qtcs = [
            ("device QTc", dev(MeasureKind::QtcBazett).or(dev(MeasureKind::Qtc)).or(dev(MeasureKind::QtcFridericia))),
            ("computed QTc (Bazett)", computed.and_then(|c| c.qtc_bazett_ms)),
        ];
        if let Some((who, q)) = qtcs.iter().find_map(|(w, v)| v.filter(|q| *q >= self.qtc_at_least_ms).map(|q| (w, q))) {
            out.push(Finding { rule: format!("QTc ≥ {} ms QTc 显著延长", self.qtc_at_least_ms), evidence: format!("{who} {q:.0} ms") });
        }
        for rule in &self.statements {
            if let Some(s) = statements.iter().find(|s| mentions(s, &rule.phrases)) {
                out.push(Finding { rule: rule.name.clone(), evidence: format!("device statement: {s}") });
            }
        }
        out
    }
}

/// Whether `statement` contains one of `phrases`, not negated just before it.
fn mentions(statement: &str, phrases: &[String]) -> bool {
    let s = statement.to_lowercase();
    phrases.iter().any(|p| {
        let p = p.to_lowercase();
        s.match_indices(&p).any(|(at, _)| {
            let before: String = s[..at].chars().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
            !NEGATIONS.iter().any(|n| before.ends_with(n) || before.trim_end().ends_with(n.trim_end()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_fire_unless_negated() {
        let r = Rules::default();
        let f = r.evaluate(None, &[], &[">>> Acute MI <<<".into()]);
        assert_eq!(f.len(), 1);
        assert!(f[0].rule.contains("STEMI"));
        assert!(r.evaluate(None, &[], &["No acute MI".into()]).is_empty());
        assert!(r.evaluate(None, &[], &["未见急性心肌梗死".into()]).is_empty());
        assert_eq!(r.evaluate(None, &[], &["三度房室传导阻滞".into()]).len(), 1);
        assert_eq!(r.evaluate(None, &[], &["Sinus rhythm".into()]).len(), 0);
    }

    #[test]
    fn thresholds() {
        let r = Rules::default();
        let dev = |k, v| DeviceMeasurement { kind: k, value: v };
        assert_eq!(r.evaluate(None, &[dev(MeasureKind::HeartRate, 38.0)], &[]).len(), 1);
        assert_eq!(r.evaluate(None, &[dev(MeasureKind::HeartRate, 40.0)], &[]).len(), 0);
        assert_eq!(r.evaluate(None, &[dev(MeasureKind::HeartRate, 151.0)], &[]).len(), 1);
        assert_eq!(r.evaluate(None, &[dev(MeasureKind::QtcBazett, 500.0)], &[]).len(), 1);
        assert_eq!(r.evaluate(None, &[dev(MeasureKind::QtcBazett, 499.0)], &[]).len(), 0);
    }
}
