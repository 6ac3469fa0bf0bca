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
    token_matches(header.strip_prefix("Bearer ").unwrap_or(""), token)
}

/// The constant-time comparison of a token the client gave with the configured one.
fn token_matches(given: &str, token: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into()
}

pub async fn metrics(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !authorized(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    state
        .metrics
        .outbox_depth
        .set(state.ops.outbox_depth() as i64);
    let registry = state.metrics.registry();
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(crate::metrics::render(&registry))
}

/// The operator console page (assets embedded in the binary).
pub async fn console(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !authorized(&req, &state) && !token_in_query(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("assets/console.html"))
}

/// The page itself may be opened with `?token=…` (it then sends the bearer header).
fn token_in_query(req: &HttpRequest, state: &State) -> bool {
    let token = state.settings.admin_token.expose();
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("token").cloned())
        .is_some_and(|given| token_matches(&given, token))
}

#[derive(Debug, serde::Deserialize)]
pub struct TryRequest {
    pub message: String,
    #[serde(default)]
    pub user: Option<String>,
}

/// `POST /api/try`: what the live rules would do with a message (same output as `kefu try --json`).
pub async fn try_message(
    req: HttpRequest,
    body: web::Json<TryRequest>,
    state: web::Data<State>,
) -> HttpResponse {
    if !authorized(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let set = state.rules.current();
    let now = chrono::Utc::now().timestamp();
    let ctx = crate::dispatch::Context::for_tools(&state.settings, now);
    let mut session = crate::store::Session::default();
    let user = body.user.as_deref().unwrap_or("o_console_try");
    let decision = crate::dispatch::trial::try_one(&set, user, &body.message, &mut session, &ctx);
    HttpResponse::Ok().json(crate::dispatch::trial::TryOutput::new(
        &body.message,
        &decision,
    ))
}

/// How far back the console looks, and its chart's bucket.
const SUMMARY_WINDOW_SECS: i64 = 24 * 3600;
const SUMMARY_BUCKET_SECS: i64 = 3600;

/// `GET /api/summary`: what the console shows (totals, chart, hits, unmatched, outbox, rules).
pub async fn summary(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !authorized(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let now = chrono::Utc::now().timestamp();
    let since = now - SUMMARY_WINDOW_SECS;
    let ops = state.ops.clone();
    let tz = state.settings.tz;
    let read = web::block(move || {
        let report = ops.stats(since, tz)?;
        let series = ops.series(since, SUMMARY_BUCKET_SECS)?;
        let failures = ops.recent_failures(20)?;
        Ok::<_, crate::store::StoreError>((report, series, failures, ops.outbox_depth()))
    })
    .await;
    let (report, series, failures, depth) = match read {
        Ok(Ok(data)) => data,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "console summary: store read failed");
            return HttpResponse::ServiceUnavailable().body("store unavailable");
        }
        Err(_) => return HttpResponse::ServiceUnavailable().body("store unavailable"),
    };
    let answers: u64 = series.iter().map(|p| p.answers).sum();
    let counts = |v: &[crate::store::stats::Count]| {
        v.iter()
            .map(|c| serde_json::json!({"id": c.key, "count": c.count}))
            .collect::<Vec<_>>()
    };
    let rules = state.rules.status();
    HttpResponse::Ok().json(serde_json::json!({
        "window": "last 24 h",
        "totals": {
            "messages": report.messages,
            "answers": answers,
            "handoffs": report.handoffs,
            "unmatched": report.unmatched,
        },
        "series": series,
        "rule_hits": counts(&report.rules),
        "faq_hits": counts(&report.faqs),
        "unmatched": report.top_unmatched.iter()
            .map(|c| serde_json::json!({"text": c.key, "count": c.count}))
            .collect::<Vec<_>>(),
        "sends": report.sends,
        "outbox": {
            "depth": depth,
            "recent_failures": failures.iter().map(|f| serde_json::json!({
                "app": f.app,
                "openid": f.openid,
                "preview": f.preview,
                "attempts": f.attempts,
                "errcode": f.errcode,
                "reason": f.reason,
                "at": chrono::DateTime::from_timestamp_millis(f.failed_ms)
                    .map(|t| t.with_timezone(&tz).to_rfc3339())
                    .unwrap_or_default(),
            })).collect::<Vec<_>>(),
        },
        "rules": rules,
        "dry_run_sends": state.client.dry_run_sends().iter().rev().take(20).collect::<Vec<_>>(),
    }))
}
