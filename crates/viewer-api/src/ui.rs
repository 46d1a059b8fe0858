//! The landing page served at `/`. The full reading room, technician desk and report portal
//! are the web-viewer issue; until then this page says where the API is.

use axum::response::Html;

pub async fn index() -> Html<&'static str> {
    Html(include_str!("../../../web-viewer/index.html"))
}
