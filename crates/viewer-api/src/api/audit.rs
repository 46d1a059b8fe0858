//! The audit trail for admins: `GET /api/admin/audit` (filtered, newest first, paged) and
//! `GET /api/admin/audit/export` (the same filters, every matching row, CSV or NDJSON,
//! streamed page by page). Reading the trail is itself recorded.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use worklist::Role;

use crate::auth::{require, Caller};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    user: Option<String>,
    patient_id: Option<String>,
    study: Option<String>,
    action: Option<String>,
    /// `YYYY-MM-DD` (the hub's local day, `utc_offset_hours`), RFC 3339, or ms
    from: Option<String>,
    /// exclusive; a bare date means the whole of that day
    to: Option<String>,
    /// the `next_before` of the previous page
    before: Option<i64>,
    limit: Option<i64>,
    /// export only: `csv` (default) or `ndjson`
    format: Option<String>,
}

/// A time bound: ms since the epoch. `end`: a bare date means the end of that day.
fn time_bound(text: &str, end: bool, offset_hours: i32) -> Result<i64, ApiError> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let d = if end { d.succ_opt().unwrap_or(d) } else { d };
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis();
        return Ok(midnight - i64::from(offset_hours) * 3_600_000);
    }
    Err(ApiError::BadRequest(format!(
        "{t:?} is not a time: use YYYY-MM-DD, an RFC 3339 time or milliseconds since 1970 / 时间格式无效"
    )))
}

fn filter(st: &AppState, q: &AuditQuery) -> Result<audit::Filter, ApiError> {
    let offset = st.worklist.config.utc_offset_hours;
    let nonempty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let action = match nonempty(&q.action) {
        None => None,
        Some(a) => Some(audit::Action::parse(&a).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown action {a:?}; one of: {}",
                audit::Action::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?),
    };
    Ok(audit::Filter {
        username: nonempty(&q.user),
        patient_id: nonempty(&q.patient_id),
        study_uid: nonempty(&q.study),
        action,
        from: nonempty(&q.from).map(|t| time_bound(&t, false, offset)).transpose()?,
        to: nonempty(&q.to).map(|t| time_bound(&t, true, offset)).transpose()?,
        before: q.before,
    })
}

/// `GET /api/admin/audit`: `{ entries: [...], next_before: id | null }`, newest first.
pub async fn audit_trail(State(st): State<AppState>, caller: Caller, Query(q): Query<AuditQuery>) -> ApiResult<Json<serde_json::Value>> {
    require(&caller, &[Role::Admin])?;
    let f = filter(&st, &q)?;
    let limit = q.limit.unwrap_or(100).clamp(1, audit::PAGE_MAX);
    // this node's latest events are in the table before it is read
    st.audit.flush().await;
    let entries = audit::query(&st.storage.db, &f, limit).await?;
    let next_before = (entries.len() as i64 == limit).then(|| entries.last().map(|e| e.id)).flatten();
    Ok(Json(serde_json::json!({ "entries": entries, "next_before": next_before })))
}

/// `GET /api/admin/audit/export?format=csv|ndjson`: every matching row, newest first.
pub async fn export(State(st): State<AppState>, caller: Caller, Query(q): Query<AuditQuery>) -> ApiResult<Response> {
    require(&caller, &[Role::Admin])?;
    let f = filter(&st, &q)?;
    let csv = match q.format.as_deref().unwrap_or("csv") {
        "csv" => true,
        "ndjson" => false,
        other => return Err(ApiError::BadRequest(format!("format {other:?}: use csv or ndjson"))),
    };
    st.audit.flush().await;
    let db = st.storage.db.clone();
    // page by page, so a year's trail is never held in memory at once
    let pages = futures::stream::unfold((Some(f), true), move |(next, first)| {
        let db = db.clone();
        async move {
            let page_filter = next?;
            let page = match audit::query(&db, &page_filter, audit::PAGE_MAX).await {
                Ok(p) => p,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), (None, false))),
            };
            let mut out = String::new();
            if csv && first {
                // a BOM, so spreadsheet programs read the Chinese names as UTF-8
                out.push('\u{feff}');
                out.push_str(audit::Entry::CSV_HEADER);
            }
            for e in &page {
                if csv {
                    out.push_str(&e.csv_row());
                } else {
                    out.push_str(&serde_json::to_string(e).unwrap_or_default());
                    out.push('\n');
                }
            }
            let more = (page.len() as i64 == audit::PAGE_MAX)
                .then(|| page.last().map(|e| audit::Filter { before: Some(e.id), ..page_filter.clone() }))
                .flatten();
            if out.is_empty() && more.is_none() && !first {
                return None;
            }
            Some((Ok(bytes::Bytes::from(out)), (more, false)))
        }
    });
    let (media, ext) = if csv { ("text/csv; charset=utf-8", "csv") } else { ("application/x-ndjson", "ndjson") };
    // fused: the compression layer polls once more after the end
    let mut resp = Body::from_stream(futures::StreamExt::fuse(pages)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"readhub-audit.{ext}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_local_days() {
        // 2026-12-01 in UTC+8 starts at 2026-11-30T16:00Z
        assert_eq!(time_bound("2026-12-01", false, 8).unwrap(), time_bound("2026-11-30T16:00:00Z", false, 0).unwrap());
        assert_eq!(time_bound("2026-12-01", true, 8).unwrap(), time_bound("2026-12-01T16:00:00Z", false, 0).unwrap());
        assert_eq!(time_bound("12345", false, 8).unwrap(), 12345);
        assert!(time_bound("yesterday", false, 8).is_err());
    }
}
