//! Routing rules: an ordered, versioned rule set decides which pool reads a study.
//!
//! A rule matches on any of site, consortium, modality, SOP class, body part, study
//! description (wildcards `*` `?`, case-insensitive), priority and local time of day; the
//! first rule that matches wins and names the target pool, optionally a preferred reader and
//! a priority. With no rule set installed, ECG waveforms go to the consortium's ECG pool and
//! everything else to its imaging pool. With a rule set installed and no rule matching, the
//! study goes to that same fallback pool and the pool's supervisors get an alert: a study is
//! never left unrouted.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::directory::Pool;
use crate::hours::{in_hours, parse_hours};
use crate::{UserId, Error, PoolKind, Priority, Role, Worklist};

/// One routing rule as written in the config (`[[routing.rules]]`) or the admin API. Empty
/// lists match anything.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consortia: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modalities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sop_classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body_parts: Vec<String>,
    /// wildcard pattern on Study Description, e.g. `*胸*` or `CHEST*`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priorities: Vec<String>,
    /// local hours `FROM-TO` (24 h clock, TO exclusive, may wrap midnight: `20-8`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
    /// target pool (`name` or `CONSORTIUM/name`)
    pub pool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_reader: Option<String>,
    /// raise the item to this priority
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_priority: Option<String>,
}

/// What routing needs to know about a study.
#[derive(Debug, Clone)]
pub struct StudyFacts<'a> {
    pub site: &'a str,
    pub consortium: &'a str,
    pub consortium_id: i64,
    pub modality: Option<&'a str>,
    pub sop_class_uid: &'a str,
    pub body_part: Option<&'a str>,
    pub study_description: Option<&'a str>,
    pub priority: Priority,
    pub is_ecg: bool,
    /// ms since the epoch
    pub at: i64,
}

/// Where a study goes and why.
#[derive(Debug, Clone)]
pub struct Decision {
    pub pool: Pool,
    /// `v3:ct-specialists`, `builtin:ecg`, `v3:fallback`
    pub routed_by: String,
    pub version: Option<i64>,
    pub preferred_reader: Option<UserId>,
    pub priority: Option<Priority>,
    /// nothing matched: the pool's supervisors are alerted
    pub unmatched: bool,
}

/// The installed rule set.
#[derive(Debug, Clone, Serialize)]
pub struct RuleSet {
    pub version: i64,
    pub rules: Vec<Rule>,
    pub created_at: i64,
    pub created_by: String,
}

fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // classic two-pointer glob match with backtracking on the last '*'
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

impl Rule {
    fn matches(&self, f: &StudyFacts<'_>, utc_offset_hours: i32) -> bool {
        let any = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x.trim().eq_ignore_ascii_case(v.trim())))
        };
        let modality_ok = self.modalities.is_empty()
            || f.modality.is_some_and(|m| m.split('\\').any(|m| any(&self.modalities, Some(m))));
        let hours_ok = match self.hours.as_deref().map(parse_hours) {
            None => true,
            Some(Err(_)) => false,
            Some(Ok((from, to))) => in_hours(from, to, f.at, utc_offset_hours),
        };
        any(&self.sites, Some(f.site))
            && any(&self.consortia, Some(f.consortium))
            && modality_ok
            && any(&self.sop_classes, Some(f.sop_class_uid))
            && any(&self.body_parts, f.body_part)
            && self.study_description.as_deref().is_none_or(|p| f.study_description.is_some_and(|d| wildcard(p, d)))
            && (self.priorities.is_empty()
                || self.priorities.iter().any(|p| Priority::parse(p).is_ok_and(|p| p == f.priority)))
            && hours_ok
    }
}

impl Worklist {
    /// The installed rule set, if any.
    pub async fn ruleset(&self) -> Result<Option<RuleSet>, Error> {
        let r = sqlx::query(
            "SELECT version, rules_json, created_at, created_by FROM routing_rulesets ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(self.db.pool())
        .await
        .map_err(Error::db("select rule set"))?;
        r.map(|r| {
            let rules: Vec<Rule> = serde_json::from_str(&r.get::<String, _>("rules_json"))
                .map_err(|e| Error::Invalid(format!("stored rule set is unreadable: {e}")))?;
            Ok(RuleSet { version: r.get("version"), rules, created_at: r.get("created_at"), created_by: r.get("created_by") })
        })
        .transpose()
    }

    /// Check a rule set against the directory; every problem is named, with its rule.
    pub async fn validate_rules(&self, rules: &[Rule]) -> Result<(), Error> {
        let mut problems = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, r) in rules.iter().enumerate() {
            let who = format!("rule {} ({:?})", i + 1, r.name);
            if r.name.trim().is_empty() {
                problems.push(format!("{who}: has no name"));
            }
            if !names.insert(r.name.clone()) {
                problems.push(format!("{who}: the name is used twice"));
            }
            let pool = match self.pool_by_name(&r.pool).await {
                Ok(p) => Some(p),
                Err(e) => {
                    problems.push(format!("{who}: target pool {:?} is unknown ({e})", r.pool));
                    None
                }
            };
            for s in &r.sites {
                if storage::sites::site_by_name(&self.db, s).await?.is_none() {
                    problems.push(format!("{who}: site {s:?} is unknown"));
                }
            }
            for c in &r.consortia {
                if storage::sites::consortium_id(&self.db, c).await?.is_none() {
                    problems.push(format!("{who}: consortium {c:?} is unknown"));
                }
            }
            for p in r.priorities.iter().chain(r.set_priority.iter()) {
                if let Err(e) = Priority::parse(p) {
                    problems.push(format!("{who}: {e}"));
                }
            }
            if let Some(h) = &r.hours {
                if let Err(e) = parse_hours(h) {
                    problems.push(format!("{who}: {e}"));
                }
            }
            if let (Some(reader), Some(pool)) = (&r.preferred_reader, &pool) {
                match self.user_by_name(reader).await? {
                    Some(u) if u.role == Role::Reader && u.pool_id == Some(pool.id) => {}
                    Some(_) => problems.push(format!("{who}: preferred reader {reader:?} is not a reader of pool {:?}", r.pool)),
                    None => problems.push(format!("{who}: preferred reader {reader:?} is unknown")),
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!("routing rules refused: {}", problems.join("; "))))
        }
    }

    /// Install a new rule set version (after validation). Installing the same rules as the
    /// current version changes nothing and returns that version.
    pub async fn install_rules(&self, rules: &[Rule], by: &str) -> Result<i64, Error> {
        self.validate_rules(rules).await?;
        if let Some(current) = self.ruleset().await? {
            if current.rules == rules {
                return Ok(current.version);
            }
        }
        let json = serde_json::to_string(rules).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut tx = self.db.begin_write().await?;
        let version: i64 = sqlx::query(
            "INSERT INTO routing_rulesets (rules_json, created_at, created_by) VALUES ($1, $2, $3) RETURNING version",
        )
        .bind(json)
        .bind(self.now())
        .bind(by)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::db("insert rule set"))?
        .get(0);
        tx.commit().await?;
        tracing::info!(version, rules = rules.len(), by, "routing rules installed");
        Ok(version)
    }

    /// Decide the pool of a new study.
    pub async fn route(&self, f: &StudyFacts<'_>) -> Result<Decision, Error> {
        let kind = if f.is_ecg { PoolKind::Ecg } else { PoolKind::Imaging };
        let Some(set) = self.ruleset().await? else {
            let pool = self.pool_for(f.consortium_id, kind).await?;
            return Ok(Decision {
                pool,
                routed_by: format!("builtin:{kind}"),
                version: None,
                preferred_reader: None,
                priority: None,
                unmatched: false,
            });
        };
        for rule in &set.rules {
            if !rule.matches(f, self.config.utc_offset_hours) {
                continue;
            }
            // validated on install; a pool or reader deleted since is an unmatched rule
            let Ok(pool) = self.pool_by_name(&rule.pool).await else { continue };
            let preferred_reader = match &rule.preferred_reader {
                Some(name) => self.user_by_name(name).await?.map(|u| u.id),
                None => None,
            };
            return Ok(Decision {
                pool,
                routed_by: format!("v{}:{}", set.version, rule.name),
                version: Some(set.version),
                preferred_reader,
                priority: rule.set_priority.as_deref().and_then(|p| Priority::parse(p).ok()),
                unmatched: false,
            });
        }
        let pool = self.pool_for(f.consortium_id, kind).await?;
        Ok(Decision {
            pool,
            routed_by: format!("v{}:fallback", set.version),
            version: Some(set.version),
            preferred_reader: None,
            priority: None,
            unmatched: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*chest*", "PA Chest view"));
        assert!(wildcard("胸*", "胸部正位"));
        assert!(wildcard("c?t", "CAT"));
        assert!(!wildcard("chest", "chest pa"));
        assert!(wildcard("*", ""));
    }

    #[test]
    fn rules_match_on_each_field_and_time_of_day() {
        let f = StudyFacts {
            site: "Township-A",
            consortium: "default",
            consortium_id: 1,
            modality: Some("CT"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2",
            body_part: Some("CHEST"),
            study_description: Some("胸部CT平扫"),
            priority: Priority::Stat,
            is_ecg: false,
            // 2026-11-23 02:00 UTC = 10:00 in China
            at: 1_795_399_200_000,
        };
        let rule = |r: Rule| r.matches(&f, 8);
        assert!(rule(Rule { modalities: vec!["ct".into()], ..Default::default() }));
        assert!(!rule(Rule { modalities: vec!["CR".into()], ..Default::default() }));
        assert!(rule(Rule { sites: vec!["Township-A".into()], body_parts: vec!["chest".into()], ..Default::default() }));
        assert!(rule(Rule { study_description: Some("*胸*".into()), ..Default::default() }));
        assert!(rule(Rule { priorities: vec!["stat".into()], ..Default::default() }));
        assert!(!rule(Rule { priorities: vec!["routine".into()], ..Default::default() }));
        assert!(rule(Rule { hours: Some("8-18".into()), ..Default::default() }));
        assert!(!rule(Rule { hours: Some("20-8".into()), ..Default::default() }), "10:00 local is not night");
        assert!(!Rule { hours: Some("8-18".into()), ..Default::default() }.matches(&f, 0), "02:00 UTC is night in UTC");
    }
}
