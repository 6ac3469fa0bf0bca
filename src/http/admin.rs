//! The admin listener: `/metrics` in the Prometheus text format and the operator console.
//! Never exposed publicly; an optional bearer token (`admin_token`) guards it.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use super::State;

/// Proof that a request may use the admin listener: its Host names this listener (no DNS
/// rebinding: a page on another site that resolves its name to 127.0.0.1 sends its own name)
/// and, when `admin_token` is set, it carries the token (`Authorization: Bearer …`, or
/// `?token=…` for the console page itself, which then sends the header).
pub struct AdminAccess;

/// Why the admin listener refused a request.
#[derive(Debug, thiserror::Error)]
pub enum AdminRefusal {
    #[error("Host header names another site (add it to admin_hosts if it is yours)")]
    ForeignHost,
    #[error("admin token missing or wrong")]
    Unauthorized,
}

impl actix_web::ResponseError for AdminRefusal {
    fn status_code(&self) -> actix_web::http::StatusCode {
        match self {
            Self::ForeignHost => actix_web::http::StatusCode::MISDIRECTED_REQUEST,
            Self::Unauthorized => actix_web::http::StatusCode::UNAUTHORIZED,
        }
    }
}

impl actix_web::FromRequest for AdminAccess {
    type Error = AdminRefusal;
    type Future = std::future::Ready<Result<Self, AdminRefusal>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(check_access(req))
    }
}

fn check_access(req: &HttpRequest) -> Result<AdminAccess, AdminRefusal> {
    let Some(state) = req.app_data::<web::Data<State>>() else {
        return Err(AdminRefusal::Unauthorized);
    };
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    if let Some(host) = host
        && !host_allowed(
            host,
            &state.settings.admin_listen,
            &state.settings.admin_hosts,
        )
    {
        tracing::warn!(host = %crate::telemetry::Escaped(host), path = req.path(), "admin: refused a foreign Host header");
        return Err(AdminRefusal::ForeignHost);
    }
    let token = state.settings.admin_token.expose();
    if token.is_empty() {
        return Ok(AdminAccess);
    }
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if token_matches(header.strip_prefix("Bearer ").unwrap_or(""), token)
        || (req.path() == "/" && token_in_query(req, token))
    {
        Ok(AdminAccess)
    } else {
        Err(AdminRefusal::Unauthorized)
    }
}

/// Whether a Host header names this listener: its own address, localhost or a loopback
/// address, or one of `admin_hosts` (each with or without the port).
pub fn host_allowed(host: &str, listen: &str, admin_hosts: &[String]) -> bool {
    let name = strip_port(host);
    let own = strip_port(listen.trim());
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback
        || name.eq_ignore_ascii_case(own)
        || admin_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(name))
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`; a bare host as it is.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The constant-time comparison of a token the client gave with the configured one.
fn token_matches(given: &str, token: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into()
}

/// `?token=…` in the query.
fn token_in_query(req: &HttpRequest, token: &str) -> bool {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("token").cloned())
        .is_some_and(|given| token_matches(&given, token))
}

pub async fn metrics(_: AdminAccess, state: web::Data<State>) -> HttpResponse {
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
pub async fn console(_: AdminAccess) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("assets/console.html"))
}

#[derive(Debug, serde::Deserialize)]
pub struct TryRequest {
    pub message: String,
    #[serde(default)]
    pub user: Option<String>,
}

/// `POST /api/try`: what the live rules would do with a message (same output as `kefu try --json`).
pub async fn try_message(
    _: AdminAccess,
    body: web::Json<TryRequest>,
    state: web::Data<State>,
) -> HttpResponse {
    let set = state.rules.current();
    let now = chrono::Utc::now().timestamp();
    let ctx = state.settings.tool_context(now);
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
pub async fn summary(_: AdminAccess, state: web::Data<State>) -> HttpResponse {
    let now = chrono::Utc::now().timestamp();
    let since = now - SUMMARY_WINDOW_SECS;
    let ops = Arc::clone(&state.ops);
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
            state.store_health.failed("read", &e);
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
        "apps": apps_overview(&state),
    }))
}

/// Each app with its kind and whether it runs in dry-run (the console's banner).
fn apps_overview(state: &State) -> Vec<serde_json::Value> {
    let mut apps: Vec<_> = state.apps.values().map(|a| &a.config).collect();
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    apps.into_iter()
        .map(|c| serde_json::json!({"id": c.id, "kind": c.kind, "dry_run": c.effective_dry_run()}))
        .collect()
}

/// How far back the conversations page looks by default.
const CONVERSATIONS_WINDOW_SECS: i64 = 7 * 24 * 3600;

/// Query of the conversations page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ConversationsQuery {
    /// Search: users whose messages or replies contain this.
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub app: Option<String>,
    /// One user's thread.
    #[serde(default)]
    pub user: Option<String>,
}

/// `GET /api/conversations`: the users seen in the last 7 days, newest first (`q`: those whose
/// messages or replies contain it).
pub async fn conversations(
    _: AdminAccess,
    query: web::Query<ConversationsQuery>,
    state: web::Data<State>,
) -> HttpResponse {
    let now = chrono::Utc::now().timestamp();
    let q = crate::store::history::LogQuery {
        app: query.app.clone().filter(|a| !a.is_empty()),
        openid: None,
        since: now - CONVERSATIONS_WINDOW_SECS,
        grep: query.q.clone().filter(|g| !g.trim().is_empty()),
        limit: 100,
    };
    let ops = Arc::clone(&state.ops);
    match web::block(move || ops.recent_users(&q)).await {
        Ok(Ok(users)) => HttpResponse::Ok().json(serde_json::json!({ "users": users })),
        Ok(Err(e)) => {
            state.store_health.failed("read", &e);
            HttpResponse::ServiceUnavailable().body("store unavailable")
        }
        Err(_) => HttpResponse::ServiceUnavailable().body("store unavailable"),
    }
}

/// `GET /api/thread?app=A&user=OPENID`: one user's thread, both sides, with each send's outcome.
pub async fn thread(
    _: AdminAccess,
    query: web::Query<ConversationsQuery>,
    state: web::Data<State>,
) -> HttpResponse {
    let Some(user) = query.user.clone().filter(|u| !u.is_empty()) else {
        return HttpResponse::BadRequest().body("user is required");
    };
    let now = chrono::Utc::now().timestamp();
    let q = crate::store::history::LogQuery {
        app: query.app.clone().filter(|a| !a.is_empty()),
        openid: Some(user),
        since: now - CONVERSATIONS_WINDOW_SECS,
        grep: None,
        limit: 500,
    };
    let ops = Arc::clone(&state.ops);
    let tz = state.settings.tz;
    match web::block(move || ops.threads(&q)).await {
        Ok(Ok(threads)) => {
            let views: Vec<_> = threads
                .iter()
                .map(|t| crate::store::history::view(t, tz))
                .collect();
            HttpResponse::Ok().json(serde_json::json!({ "threads": views }))
        }
        Ok(Err(e)) => {
            state.store_health.failed("read", &e);
            HttpResponse::ServiceUnavailable().body("store unavailable")
        }
        Err(_) => HttpResponse::ServiceUnavailable().body("store unavailable"),
    }
}

/// `POST /api/session/end` `{"app": A, "user": OPENID}`: ends the user's handoff now, as `kefu
/// session end` does (through the same store interface).
#[derive(Debug, serde::Deserialize)]
pub struct EndRequest {
    pub app: String,
    pub user: String,
}

pub async fn end_session(
    _: AdminAccess,
    body: web::Json<EndRequest>,
    state: web::Data<State>,
) -> HttpResponse {
    let EndRequest { app, user } = body.into_inner();
    if !state.apps.contains_key(&app) || user.trim().is_empty() {
        return HttpResponse::BadRequest().body("unknown app or empty user");
    }
    let ops = Arc::clone(&state.ops);
    let now = chrono::Utc::now().timestamp();
    match web::block(move || ops.end_session(&app, &user.trim().into(), now)).await {
        Ok(Ok(outcome)) => HttpResponse::Ok().json(serde_json::json!({ "ended": outcome })),
        Ok(Err(e)) => {
            state.store_health.failed("end_session", &e);
            HttpResponse::ServiceUnavailable().body("store unavailable")
        }
        Err(_) => HttpResponse::ServiceUnavailable().body("store unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_check() {
        let hosts = vec!["kefu.internal".to_string(), "ops.example:9091".to_string()];
        let listen = "10.0.0.5:9091";
        for ok in [
            "127.0.0.1:9091",
            "127.0.0.1",
            "localhost:9091",
            "LOCALHOST",
            "[::1]:9091",
            "10.0.0.5:9091",
            "kefu.internal",
            "kefu.internal:9091",
            "ops.example:9091",
        ] {
            assert!(host_allowed(ok, listen, &hosts), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:9091",
            "localhost.evil.example",
            "10.0.0.6:9091",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!host_allowed(refused, listen, &hosts), "{refused}");
        }
    }
}
