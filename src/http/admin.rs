//! The admin listener: `/metrics` in the Prometheus text format and the operator console.
//! Never exposed publicly; an optional bearer token (`admin_token`) guards it.

use actix_web::{HttpRequest, HttpResponse, web};

use super::State;

/// Whether the request carries the configured bearer token (always true when none is set).
pub fn authorized(req: &HttpRequest, state: &State) -> bool {
    let token = state.settings.admin_token.expose();
    if token.is_empty() {
        return true;
    }
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let given = header.strip_prefix("Bearer ").unwrap_or("");
    subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into()
}

pub async fn metrics(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !authorized(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let registry = state.metrics.registry();
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(crate::metrics::render(&registry))
}
