//! The dashboard: one HTML page with its script and styles inline, compiled into the
//! binary, so it works offline and needs no build step.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

const MONITOR_PAGE: &str = include_str!("monitor.html");

pub(crate) async fn monitor_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        MONITOR_PAGE,
    )
}
