//! Entry points for the fuzz targets (`fuzz/`) and their regression corpus: the parsers of
//! what an HTTP client sends, without I/O. Each must return (an error is fine) for any
//! input: never panic, never allocate without bound, never hang.

use axum::http::{HeaderMap, HeaderValue};

/// A QIDO-RS query string, parsed at each level.
pub fn qido_query(query: &[u8]) {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query).into_owned().collect();
    let _ = crate::dicomweb::qido::study_query(&params);
    let _ = crate::dicomweb::qido::series_query(None, &params);
    let _ = crate::dicomweb::qido::instance_query(None, None, &params);
}

/// A WADO-RS frame list (`1,3,2`).
pub fn frame_list(list: &str) {
    let _ = crate::dicomweb::frames::frame_list(list);
}

/// A STOW-RS request: its Content-Type, then its body read part by part and chunk by chunk
/// as the handler reads it (multer, with the handler's per-part limit).
pub fn stow_body(content_type: &str, body: &[u8]) {
    let Ok(value) = HeaderValue::from_str(content_type) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(axum::http::header::CONTENT_TYPE, value);
    let Ok(boundary) = crate::dicomweb::stow::boundary(&headers) else { return };
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let body = bytes::Bytes::copy_from_slice(body);
    runtime.block_on(async move {
        let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
        let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().per_field(1 << 20));
        let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
        while let Ok(Some(mut field)) = multipart.next_field().await {
            let _ = field.content_type().map(|m| m.essence_str().to_ascii_lowercase());
            while let Ok(Some(_chunk)) = field.chunk().await {}
        }
    });
}
