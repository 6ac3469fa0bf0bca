//! `GET /healthz`: liveness plus the state of the rules now serving.

use std::sync::Arc;

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
            "last_error": last_error(&state, status.last_error),
        }
    }))
}

/// Why the last reload of any rules folder was refused: the global folder's error, then those of
/// the apps' own folders (each diagnostic names its file). Version and counts are the global
/// folder's, but an operator must see every refused edit in one place.
fn last_error(state: &State, global: Option<String>) -> Option<String> {
    let mut errors: Vec<String> = global.into_iter().collect();
    let mut apps: Vec<_> = state.apps.values().collect();
    apps.sort_by(|a, b| a.config.id.cmp(&b.config.id));
    let mut seen = vec![Arc::as_ptr(&state.rules)];
    for app in apps {
        let handle = Arc::as_ptr(&app.rules);
        if seen.contains(&handle) {
            continue;
        }
        seen.push(handle);
        if let Some(error) = app.rules.status().last_error {
            errors.push(error);
        }
    }
    (!errors.is_empty()).then(|| errors.join("; "))
}
