//! `GET /healthz`: liveness plus the state of the rules now serving.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::State;

pub async fn healthz(state: web::Data<State>) -> HttpResponse {
    let status = state.rules.status();
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "rules": {
            "version": status.version,
            "rules": status.rules,
            "faq": status.faq,
            "loaded_at": status.loaded_at,
            "last_error": status.last_error,
        }
    }))
}
