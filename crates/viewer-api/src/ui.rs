//! The web viewer's files, embedded in the binary (so `readhub serve` needs no Node and no
//! second server): plain ES modules and CSS from `web-viewer/`.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

pub async fn index() -> Html<&'static str> {
    Html(include_str!("../../../web-viewer/index.html"))
}

/// `GET /app/{file}`: the viewer's modules and style sheet. They change with the binary, so
/// browsers revalidate (no-cache) rather than keep a stale copy after an upgrade.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (include_str!("../../../web-viewer/app.js"), "text/javascript; charset=utf-8"),
        "dicom.js" => (include_str!("../../../web-viewer/dicom.js"), "text/javascript; charset=utf-8"),
        "viewer.js" => (include_str!("../../../web-viewer/viewer.js"), "text/javascript; charset=utf-8"),
        "ecg.js" => (include_str!("../../../web-viewer/ecg.js"), "text/javascript; charset=utf-8"),
        "ecg-report.js" => (include_str!("../../../web-viewer/ecg-report.js"), "text/javascript; charset=utf-8"),
        "style.css" => (include_str!("../../../web-viewer/style.css"), "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
