//! Calls to the operator's own backend for `fetch` rules (SPEC §10), and the reply composed from
//! the answer.
//!
//! The backend is a server kefu does not control, so every call is bounded: `timeout_ms` for
//! the whole exchange, at most [`MAX_BODY_BYTES`] of body, redirects never followed (a 3xx is a
//! failure), TLS certificates verified (reqwest with rustls and its root store). Any failure —
//! timeout, non-2xx, a body too large, not JSON, a field the template names missing — gives the
//! rule's `fallback`. `${VAR}` in the URL and headers is filled here, at the call, from the
//! environment, so secrets never reach the outbox; info logs carry the rule, outcome and
//! latency, never the URL, headers or the user's text. Every outcome is counted in
//! `kefu_fetch_total{rule,outcome}`.
//!
//! [`compose`] and [`lookup`] are pure: the template filled from captures and the JSON answer in
//! one pass (a capture holding `{fetch.x}` is text, never filled again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::metrics::Metrics;
use crate::outbound::{FetchReply, FetchRequest};
use crate::rules::fetch::{EnvLookup, expand_env};

/// The largest answer body read; a larger one gives the fallback.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How one call ended (the `outcome` label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx, JSON, every field present.
    Ok,
    /// No full answer within `timeout_ms` (or the caller's deadline).
    Timeout,
    /// A non-2xx, non-3xx status.
    Status(u16),
    /// A 3xx: redirects are not followed.
    Redirect(u16),
    /// The body is over [`MAX_BODY_BYTES`].
    TooLarge,
    /// The body is not JSON.
    BadJson,
    /// The template names a field the answer does not have (or one that is not a text, number
    /// or boolean).
    MissingField(String),
    /// Could not connect, or the request failed otherwise (TLS, reset, …).
    Error(String),
}

impl Outcome {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Status(_) => "status",
            Outcome::Redirect(_) => "redirect",
            Outcome::TooLarge => "too_large",
            Outcome::BadJson => "bad_json",
            Outcome::MissingField(_) => "missing_field",
            Outcome::Error(_) => "error",
        }
    }

    /// One line for an operator (no URL, no user text).
    pub fn describe(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Timeout => "no answer within timeout_ms".into(),
            Outcome::Status(s) => format!("HTTP {s}"),
            Outcome::Redirect(s) => format!("HTTP {s} redirect (not followed)"),
            Outcome::TooLarge => format!("answer over {MAX_BODY_BYTES} bytes"),
            Outcome::BadJson => "answer is not JSON".into(),
            Outcome::MissingField(f) => format!("field {f:?} missing from the answer"),
            Outcome::Error(e) => e.clone(),
        }
    }
}

/// The text of a fetch reply and how the call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    /// The reply (or the fallback).
    pub text: String,
    /// How the call went.
    pub outcome: Outcome,
}

/// Reads `path` (`a.b.0.c`) in `value`: objects by key, arrays by index. Only texts, numbers
/// and booleans are fields a reply can show.
pub fn lookup(value: &Value, path: &str) -> Option<String> {
    let mut at = value;
    for part in path.split('.') {
        at = match at {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match at {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Fills `{name}` from the captures and `{fetch.a.b}` from `answer`, in one pass. `Err` names
/// the first field missing from the answer; unknown `{name}`s stay as written.
pub fn compose(
    template: &str,
    captures: &std::collections::BTreeMap<String, String>,
    answer: Option<&Value>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(rest.get(..open).unwrap_or(""));
        let after = rest.get(open + 1..).unwrap_or("");
        let Some(close) = after.find('}') else {
            out.push('{');
            rest = after;
            continue;
        };
        let name = after.get(..close).unwrap_or("");
        if let Some(path) = name.strip_prefix("fetch.") {
            match answer.and_then(|a| lookup(a, path)) {
                Some(value) => out.push_str(&value),
                None => return Err(path.to_string()),
            }
        } else if let Some(value) = captures.get(name) {
            out.push_str(value);
        } else {
            out.push('{');
            out.push_str(name);
            out.push('}');
        }
        rest = after.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// The HTTP client of `fetch` rules. Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    /// Honours the environment's proxy settings.
    http: reqwest::Client,
    /// For loopback backends: never through a proxy.
    direct: reqwest::Client,
    env: EnvLookup,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fetcher")
    }
}

/// Who the call is for (the `POST` body's `app` and `openid`).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub app: &'a str,
    pub openid: &'a str,
}

impl Fetcher {
    /// A client that reads `${VAR}` from `env` and counts outcomes in `metrics`.
    pub fn new(env: EnvLookup, metrics: Option<Metrics>) -> Result<Self, reqwest::Error> {
        let build = |direct: bool| {
            let mut b = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("kefu/", env!("CARGO_PKG_VERSION")));
            if direct {
                b = b.no_proxy();
            }
            b.build()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http: build(false)?,
                direct: build(true)?,
                env,
                metrics,
            }),
        })
    }

    /// A client reading the process environment, without metrics (`kefu try --fetch`).
    pub fn from_env() -> Result<Self, reqwest::Error> {
        Self::new(Arc::new(|name| std::env::var(name).ok()), None)
    }

    /// Makes the call of `reply` and composes its text, or the fallback. `budget`, when given,
    /// caps the call below `timeout_ms` (an Official Account's answer deadline).
    pub async fn compose(
        &self,
        caller: Caller<'_>,
        reply: &FetchReply,
        budget: Option<Duration>,
    ) -> Composed {
        let started = Instant::now();
        let captures = &reply.request.captures;
        let outcome = match self.call(caller, &reply.request, budget).await {
            Ok(answer) => match compose(&reply.template, captures, Some(&answer)) {
                Ok(text) => Ok(text),
                Err(field) => Err(Outcome::MissingField(field)),
            },
            Err(outcome) => Err(outcome),
        };
        let composed = match outcome {
            Ok(text) => Composed {
                text,
                outcome: Outcome::Ok,
            },
            Err(outcome) => Composed {
                text: compose(&reply.fallback, captures, None).unwrap_or(reply.fallback.clone()),
                outcome,
            },
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if composed.outcome == Outcome::Ok {
            tracing::info!(rule = %reply.rule, outcome = "ok", elapsed_ms, "fetch");
        } else {
            tracing::info!(
                rule = %reply.rule,
                outcome = composed.outcome.label(),
                reason = %composed.outcome.describe(),
                elapsed_ms,
                "fetch failed: replying with the fallback"
            );
        }
        if let Some(metrics) = &self.inner.metrics {
            metrics.fetch_outcome(&reply.rule, composed.outcome.label());
        }
        composed
    }

    /// The call alone: the JSON answer, or how it failed.
    pub async fn call(
        &self,
        caller: Caller<'_>,
        request: &FetchRequest,
        budget: Option<Duration>,
    ) -> Result<Value, Outcome> {
        let mut limit = Duration::from_millis(request.timeout_ms.max(1));
        if let Some(budget) = budget {
            limit = limit.min(budget);
        }
        match tokio::time::timeout(limit, self.exchange(caller, request)).await {
            Ok(result) => result,
            Err(_) => Err(Outcome::Timeout),
        }
    }

    /// The request as it would be made, `${VAR}` left as written (for `kefu try`).
    pub fn describe(request: &FetchRequest, caller: Caller<'_>) -> String {
        let mut text = format!("{} {}", request.method, request.url);
        for (name, value) in &request.headers {
            text.push_str(&format!("\n  {name}: {value}"));
        }
        if request.method == "POST" {
            text.push_str(&format!("\n  {}", post_body(caller, request)));
        }
        text
    }

    async fn exchange(&self, caller: Caller<'_>, request: &FetchRequest) -> Result<Value, Outcome> {
        let env = &*self.inner.env;
        let url = expand_env(&request.url, env)
            .map_err(|name| Outcome::Error(format!("environment variable {name} is not set")))?;
        if has_dot_segment(&url) {
            // A capture of `.` or `..` would be read as a path step: refused, not normalized.
            return Err(Outcome::Error(
                "a capture forms a `.` or `..` path segment".into(),
            ));
        }
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| Outcome::Error(format!("invalid URL: {e}")))?;
        let client = if crate::net::is_loopback(&parsed) {
            &self.inner.direct
        } else {
            &self.inner.http
        };
        let mut builder = if request.method == "POST" {
            client
                .post(parsed)
                .header("Content-Type", "application/json; charset=utf-8")
                .body(post_body(caller, request).to_string())
        } else {
            client.get(parsed)
        };
        builder = builder.header("Accept", "application/json");
        for (name, value) in &request.headers {
            let value = expand_env(value, env).map_err(|name| {
                Outcome::Error(format!("environment variable {name} is not set"))
            })?;
            builder = builder.header(name.as_str(), value);
        }
        let mut response = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                Outcome::Timeout
            } else if e.is_connect() {
                Outcome::Error("cannot connect".into())
            } else if e.is_builder() {
                Outcome::Error("invalid request (header?)".into())
            } else {
                Outcome::Error("request failed".into())
            }
        })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(Outcome::Redirect(status.as_u16()));
        }
        if !status.is_success() {
            return Err(Outcome::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(Outcome::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| Outcome::Error("answer cut off".into()))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Outcome::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| Outcome::BadJson)
    }
}

/// Whether the URL's path has a segment a URL parser reads as `.` or `..` (also
/// percent-encoded): a capture made only of dots would otherwise move the request up the path.
pub fn has_dot_segment(url: &str) -> bool {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .split_once('/')
        .map_or("", |(_, path)| path);
    path.split('/').any(|segment| {
        matches!(
            segment.to_ascii_lowercase().as_str(),
            "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
        )
    })
}

/// `{app, openid, text, captures}`.
fn post_body(caller: Caller<'_>, request: &FetchRequest) -> Value {
    serde_json::json!({
        "app": caller.app,
        "openid": caller.openid,
        "text": request.text,
        "captures": request.captures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn dotted_paths_read_objects_and_arrays() {
        let v = json!({"status": "已发货", "eta": {"date": "12-03"}, "items": [{"n": 2}], "ok": true, "x": null});
        assert_eq!(lookup(&v, "status").as_deref(), Some("已发货"));
        assert_eq!(lookup(&v, "eta.date").as_deref(), Some("12-03"));
        assert_eq!(lookup(&v, "items.0.n").as_deref(), Some("2"));
        assert_eq!(lookup(&v, "ok").as_deref(), Some("true"));
        assert_eq!(lookup(&v, "x"), None);
        assert_eq!(lookup(&v, "eta"), None);
        assert_eq!(lookup(&v, "nope.a"), None);
    }

    #[test]
    fn compose_fills_captures_and_fields_in_one_pass() {
        let captures = BTreeMap::from([("order".to_string(), "{fetch.secret}".to_string())]);
        let answer = json!({"status": "ok", "secret": "s"});
        assert_eq!(
            compose(
                "订单 {order}：{fetch.status} {other}",
                &captures,
                Some(&answer)
            )
            .unwrap(),
            "订单 {fetch.secret}：ok {other}"
        );
        assert_eq!(
            compose("{fetch.eta}", &captures, Some(&answer)).unwrap_err(),
            "eta"
        );
    }

    #[test]
    fn dot_segments_made_by_captures_are_found() {
        use crate::rules::fetch::fill_url;
        let url = |v: &str| {
            let captures = BTreeMap::from([("o".to_string(), v.to_string())]);
            fill_url("https://h.example/api/orders/{o}?q={o}", &captures)
        };
        assert!(has_dot_segment(&url("..")));
        assert!(has_dot_segment(&url(".")));
        assert!(!has_dot_segment(&url("1..2")));
        assert!(
            !has_dot_segment(&url("../x")),
            "the slash is encoded: one segment"
        );
        assert!(!has_dot_segment("https://h.example/a/b?x=/../"));
    }

    #[test]
    fn outcome_labels_are_bounded() {
        for o in [
            Outcome::Ok,
            Outcome::Timeout,
            Outcome::Status(500),
            Outcome::Redirect(302),
            Outcome::TooLarge,
            Outcome::BadJson,
            Outcome::MissingField("a".into()),
            Outcome::Error("x".into()),
        ] {
            assert!(!o.label().is_empty());
        }
    }
}
