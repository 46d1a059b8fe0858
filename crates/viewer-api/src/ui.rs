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
    let (body, content_type): (&'static [u8], _) = match file.as_str() {
        "app.js" => (include_bytes!("../../../web-viewer/app.js"), "text/javascript; charset=utf-8"),
        "dicom.js" => (include_bytes!("../../../web-viewer/dicom.js"), "text/javascript; charset=utf-8"),
        "viewer.js" => (include_bytes!("../../../web-viewer/viewer.js"), "text/javascript; charset=utf-8"),
        "ecg.js" => (include_bytes!("../../../web-viewer/ecg.js"), "text/javascript; charset=utf-8"),
        "ecg-report.js" => (include_bytes!("../../../web-viewer/ecg-report.js"), "text/javascript; charset=utf-8"),
        "codec.js" => (include_bytes!("../../../web-viewer/codec.js"), "text/javascript; charset=utf-8"),
        // CharLS in WebAssembly, from npm (@cornerstonejs/codec-charls, MIT: charlswasm_decode.LICENSE)
        "charlswasm_decode.js" => (include_bytes!("../../../web-viewer/charlswasm_decode.js"), "text/javascript; charset=utf-8"),
        "charlswasm_decode.wasm" => (include_bytes!("../../../web-viewer/charlswasm_decode.wasm"), "application/wasm"),
        "style.css" => (include_bytes!("../../../web-viewer/style.css"), "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
