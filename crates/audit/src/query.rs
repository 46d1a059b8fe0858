//! Reading the audit trail back: filters, newest first, paged by id.

use sqlx::Row;
use storage::db::Db;

use crate::Action;

/// Rows per page at most.
pub const PAGE_MAX: i64 = 1000;

/// What an admin asks for; every field narrows (none: everything).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub username: Option<String>,
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    pub action: Option<Action>,
    /// ms since the epoch, inclusive
    pub from: Option<i64>,
    /// ms since the epoch, exclusive
    pub to: Option<i64>,
    /// only rows older than this id (the previous page's last)
    pub before: Option<i64>,
}

/// One row of the trail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub id: i64,
    /// ms since the epoch
    pub at: i64,
    pub username: Option<String>,
    pub role: Option<String>,
    pub site: Option<String>,
    pub pool: Option<String>,
    pub client: Option<String>,
    pub action: String,
    pub outcome: String,
    pub study_uid: Option<String>,
    pub patient_id: Option<String>,
    pub patient_issuer: Option<String>,
    pub detail: String,
}

impl Entry {
    /// The CSV header of [`Entry::csv_row`].
    pub const CSV_HEADER: &'static str =
        "id,time_utc,username,role,site,pool,client,action,outcome,study_uid,patient_id,patient_issuer,detail\r\n";

    /// One CSV line (RFC 4180 quoting; a cell starting with `= + - @` is prefixed with `'`
    /// so a spreadsheet does not run it as a formula).
    pub fn csv_row(&self) -> String {
        let time = utc(self.at);
        let cells: [&str; 13] = [
            &self.id.to_string(),
            &time,
            self.username.as_deref().unwrap_or(""),
            self.role.as_deref().unwrap_or(""),
            self.site.as_deref().unwrap_or(""),
            self.pool.as_deref().unwrap_or(""),
            self.client.as_deref().unwrap_or(""),
            &self.action,
            &self.outcome,
            self.study_uid.as_deref().unwrap_or(""),
            self.patient_id.as_deref().unwrap_or(""),
            self.patient_issuer.as_deref().unwrap_or(""),
            &self.detail,
        ];
        let mut line = cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",");
        line.push_str("\r\n");
        line
    }
}

fn csv_cell(c: &str) -> String {
    let c = if c.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{c}") } else { c.to_string() };
    if c.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of ms since the epoch.
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// One page of the trail matching `f`, newest first, at most `limit` rows.
pub async fn query(db: &Db, f: &Filter, limit: i64) -> Result<Vec<Entry>, storage::Error> {
    let mut sql = String::from(
        "SELECT id, at, username, role, site, pool, client, action, outcome, study_uid, patient_id, patient_issuer, detail \
         FROM audit_log WHERE 1 = 1",
    );
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let texts: Vec<(&str, Option<&str>)> = vec![
        ("username", f.username.as_deref()),
        ("patient_id", f.patient_id.as_deref()),
        ("study_uid", f.study_uid.as_deref()),
        ("action", f.action.map(Action::as_str)),
    ];
    let mut text_binds = Vec::new();
    for (col, v) in &texts {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} = {}", next()));
            text_binds.push(*v);
        }
    }
    let mut int_binds = Vec::new();
    for (cond, v) in [("at >=", f.from), ("at <", f.to), ("id <", f.before)] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {cond} {}", next()));
            int_binds.push(v);
        }
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit.clamp(1, PAGE_MAX)));
    // the text is fixed column names and placeholders; every value is bound
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for v in text_binds {
        q = q.bind(v);
    }
    for v in int_binds {
        q = q.bind(v);
    }
    let rows = q.fetch_all(db.pool()).await.map_err(storage::Error::db("query the audit trail"))?;
    Ok(rows
        .iter()
        .map(|r| Entry {
            id: r.get(0),
            at: r.get(1),
            username: r.get(2),
            role: r.get(3),
            site: r.get(4),
            pool: r.get(5),
            client: r.get(6),
            action: r.get(7),
            outcome: r.get(8),
            study_uid: r.get(9),
            patient_id: r.get(10),
            patient_issuer: r.get(11),
            detail: r.get(12),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_iso() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("张三"), "张三");
    }
}
