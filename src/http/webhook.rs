//! `GET /wechat/{app}` (URL verification) and `POST /wechat/{app}` (a push).
//!
//! Checks run in the order SPEC §3 fixes — app, method, required parameters, timestamp window,
//! signature, body — and the body is always read first (bounded), so that a refused request
//! leaves the connection usable. A verified push is deduplicated, decided, made durable and
//! answered; the send API is called later by the outbox worker, never before the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::Method;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::State;
use super::error::Refusal;
use crate::config::{AppConfig, AppKind, Mode};
use crate::dispatch::{self, Action, Context, Decision};
use crate::metrics::{AppLabels, AppTypeLabels, FaqLabels, RuleLabels};
use crate::outbound::OutboundMessage;
use crate::protocol::message::{parse_envelope, parse_message};
use crate::protocol::{Format, InboundMessage, MsgKind, crypto, reply, signature};
use crate::rules::reload::RulesHandle;
use crate::store::writer::unix_now;
use crate::store::{ClaimGuard, LogRecord, Memo, PushKey, PushRecord, Resolved, resolve_claim};

/// WeChat gives up after 5 s; answer well before.
const ANSWER_DEADLINE: Duration = Duration::from_millis(4500);
/// How much of an oversized body is drained before the connection is given up.
const DRAIN_CAP: usize = 8 * 1024 * 1024;

/// One configured app with its live rules.
pub struct AppRuntime {
    pub config: AppConfig,
    pub rules: Arc<RulesHandle>,
}

/// The query of a push or a verification.
#[derive(Debug, Default, Deserialize)]
struct PushQuery {
    signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
    encrypt_type: Option<String>,
    msg_signature: Option<String>,
}

/// `/wechat/{app}`.
pub async fn with_app(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let app = state.apps.get(path.as_str()).cloned();
    serve(req, app, payload, state).await
}

/// `/wechat`: the only app, when exactly one is configured.
pub async fn single(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let app = if state.apps.len() == 1 {
        state.apps.values().next().cloned()
    } else {
        None
    };
    serve(req, app, payload, state).await
}

async fn serve(
    req: HttpRequest,
    app: Option<Arc<AppRuntime>>,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let started = Instant::now();
    let body = read_body(payload, state.settings.max_body_bytes).await;
    let result = handle(&req, app.as_deref(), body, &state, started).await;
    state
        .metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(response) => response,
        Err(refusal) => {
            state.metrics.refuse(refusal.reason());
            tracing::warn!(
                app = app.as_ref().map(|a| a.config.id.as_str()).unwrap_or("-"),
                path = req.path(),
                method = %req.method(),
                status = refusal.status().as_u16(),
                reason = %refusal,
                "refused request"
            );
            HttpResponse::build(refusal.status())
                .content_type("text/plain; charset=utf-8")
                .body(refusal.status().canonical_reason().unwrap_or("refused"))
        }
    }
}

/// Reads the body up to `limit` bytes; beyond it, drains (bounded) and reports `TooLarge`.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes, Refusal> {
    let mut body = BytesMut::new();
    let mut oversize = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| Refusal::BodyRead)?;
        if oversize > 0 || body.len() + chunk.len() > limit {
            oversize += chunk.len();
            if oversize > DRAIN_CAP {
                break;
            }
            continue;
        }
        body.extend_from_slice(&chunk);
    }
    if oversize > 0 {
        return Err(Refusal::TooLarge);
    }
    Ok(body.freeze())
}

/// How the push arrived, so that the answer goes back the same way.
struct Envelope {
    format: Format,
    /// The index of the AES key that decrypted the push; `None` for plaintext.
    key_index: Option<usize>,
    nonce: String,
}

async fn handle(
    req: &HttpRequest,
    app: Option<&AppRuntime>,
    body: Result<Bytes, Refusal>,
    state: &State,
    started: Instant,
) -> Result<HttpResponse, Refusal> {
    let app = app.ok_or(Refusal::UnknownApp)?;
    let is_get = req.method() == Method::GET;
    if !is_get && req.method() != Method::POST {
        return Err(Refusal::Method);
    }
    let query = web::Query::<PushQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let signature = query
        .signature
        .as_deref()
        .ok_or(Refusal::MissingParam("signature"))?;
    let timestamp = query
        .timestamp
        .as_deref()
        .ok_or(Refusal::MissingParam("timestamp"))?;
    let nonce = query
        .nonce
        .as_deref()
        .ok_or(Refusal::MissingParam("nonce"))?;
    let encrypted = query.encrypt_type.as_deref() == Some("aes");
    if is_get && query.echostr.is_none() {
        return Err(Refusal::MissingParam("echostr"));
    }
    let msg_signature = if !is_get && encrypted {
        Some(
            query
                .msg_signature
                .as_deref()
                .ok_or(Refusal::MissingParam("msg_signature"))?,
        )
    } else {
        None
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Refusal::BadTimestamp)?;
    let skew = state.settings.max_timestamp_skew_secs;
    if skew > 0 && (unix_now() - ts).unsigned_abs() > skew {
        return Err(Refusal::StaleTimestamp);
    }
    let token = app.config.token.expose();
    if !signature::verify(signature, &[token, timestamp, nonce]) {
        return Err(Refusal::BadSignature);
    }
    if is_get {
        let echostr = query.echostr.unwrap_or_default();
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(echostr));
    }
    match (app.config.mode, encrypted) {
        (Mode::Safe, false) => return Err(Refusal::PlaintextRefused),
        (Mode::Plaintext, true) => return Err(Refusal::EncryptedRefused),
        _ => {}
    }

    let body = body?;
    let (envelope, msg) = match msg_signature {
        Some(msg_signature) => {
            let outer = parse_envelope(&body)?;
            let encrypt = outer.encrypt.ok_or(Refusal::NoEncrypt)?;
            if !signature::verify(msg_signature, &[token, timestamp, nonce, &encrypt]) {
                return Err(Refusal::BadMsgSignature);
            }
            let (key_index, plain) =
                crypto::decrypt_with_any(&app.config.aes_keys, &encrypt, &app.config.appid)?;
            let (_, msg) = parse_message(&plain)?;
            (
                Envelope {
                    format: outer.format,
                    key_index: Some(key_index),
                    nonce: nonce.to_string(),
                },
                msg,
            )
        }
        None => {
            let (format, msg) = parse_message(&body)?;
            (
                Envelope {
                    format,
                    key_index: None,
                    nonce: nonce.to_string(),
                },
                msg,
            )
        }
    };
    Ok(process(app, envelope, msg, state, started).await)
}

/// Dedupe, decide, commit, answer.
async fn process(
    app: &AppRuntime,
    envelope: Envelope,
    msg: InboundMessage,
    state: &State,
    started: Instant,
) -> HttpResponse {
    let deadline = tokio::time::Instant::from_std(started) + ANSWER_DEADLINE;
    let app_id = app.config.id.as_str();
    let key = PushKey::of(app_id, &msg);
    let now = unix_now();

    // A repeated push gets the first answer; one still in flight is waited for.
    match tokio::time::timeout_at(deadline, resolve_claim(&*state.store, &key, now)).await {
        Ok(Ok(Resolved::New)) => {}
        Ok(Ok(Resolved::Replay(memo))) => {
            count_duplicate(state, app_id);
            tracing::info!(app = app_id, openid = %msg.from_user_name, "repeated push answered from memo");
            return memo_response(&memo);
        }
        Ok(Err(e)) => {
            tracing::error!(app = app_id, error = %e, "store claim failed");
            return unavailable("store unavailable");
        }
        Err(_) => return unavailable("first attempt still in flight"),
    }
    // Until the record is handed to the store, dropping this (an early return, or the client
    // going away mid-request) releases the claim for WeChat's retry.
    let guard = ClaimGuard::new(&*state.store, key.clone());

    let session = match state.store.session(app_id, &msg.from_user_name, now) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(app = app_id, error = %e, "store session read failed");
            return unavailable("store unavailable");
        }
    };
    let rules = app.rules.current();
    let ctx = Context::at_unix(
        now,
        state.settings.tz,
        app.config.handoff_minutes,
        state.settings.faq.menu_ttl_secs,
    );
    let mut decision = dispatch::decide(&rules, &msg, &session, &ctx);
    let (memo, outbox) = answer(app, &envelope, &msg, &mut decision, now);
    count(state, app_id, &msg, &decision);
    // The answer is built now; the memo itself goes to the store for WeChat's retries.
    let response = memo_response(&memo);

    let record = PushRecord {
        key,
        app: app_id.to_string(),
        openid: msg.from_user_name.clone(),
        received_at: now,
        memo,
        session: decision.session.take(),
        quota_trigger: dispatch::quota_trigger(&msg),
        outbox,
        log: LogRecord {
            msg_type: msg.kind.type_name().to_string(),
            text: match &msg.kind {
                MsgKind::Text { content } => Some(content.clone()),
                _ => None,
            },
            rule: decision.rule.clone(),
            faq: decision.faq.clone(),
            action: decision.action.as_str().to_string(),
            handoff: decision.handoff,
        },
    };
    // A push that queues messages, or changes the user's session (a menu, a handoff), is
    // answered only once that is durable and visible (SPEC §6; the user's next message must see
    // the session). One that changes neither is answered at once: its memo and log follow in the
    // same group commit, and if kefu died before that commit, WeChat's retry would simply be
    // decided again, with nothing sent twice because nothing is sent at all.
    let must_wait = !record.outbox.is_empty() || record.session.is_some();
    let ticket = state.store.commit(record);
    // The writer owns the claim now: it resolves it, or releases it if the commit fails.
    guard.committed();
    if must_wait {
        match tokio::time::timeout_at(deadline, ticket).await {
            Ok(Ok(Ok(report))) => {
                // A late retry whose memo had left memory: the first answer, found on disk.
                if let Some(replay) = report.replay {
                    count_duplicate(state, app_id);
                    return memo_response(&replay);
                }
                if !report.dropped.is_empty() {
                    for _ in &report.dropped {
                        state.metrics.send_outcome("dropped");
                    }
                    // The texts stay out of the log (they are in the send log, for `kefu stats`).
                    tracing::warn!(app = app_id, openid = %msg.from_user_name, dropped = report.dropped.len(), "replies over the send quota were not queued");
                }
            }
            Ok(Ok(Err(e))) => {
                tracing::error!(app = app_id, error = %e, "store commit failed");
                return unavailable("store unavailable");
            }
            Ok(Err(_)) => {
                tracing::error!(app = app_id, "store dropped the commit");
                return unavailable("store unavailable");
            }
            Err(_) => {
                tracing::error!(app = app_id, "store commit missed the answer deadline");
                return unavailable("store too slow");
            }
        }
    }
    tracing::info!(
        app = app_id,
        openid = %msg.from_user_name,
        msg_type = msg.kind.type_name(),
        rule = decision.rule.as_deref().unwrap_or("-"),
        faq = decision.faq.as_deref().unwrap_or("-"),
        action = decision.action.as_str(),
        latency_us = started.elapsed().as_micros() as u64,
        "push"
    );
    response
}

/// Builds the HTTP answer and the messages left for the send API.
fn answer(
    app: &AppRuntime,
    envelope: &Envelope,
    msg: &InboundMessage,
    decision: &mut Decision,
    now: i64,
) -> (Memo, Vec<OutboundMessage>) {
    let mut outbox = std::mem::take(&mut decision.replies);
    let openid = msg.from_user_name.as_str();
    let original_id = msg.to_user_name.as_str();
    let plain = if decision.handoff {
        Some((
            reply::transfer(envelope.format, openid, original_id, now),
            envelope.format,
        ))
    } else if app.config.kind == AppKind::OfficialAccount
        && matches!(outbox.first(), Some(OutboundMessage::Text { .. }))
    {
        // An official account answers its first text passively, in the response (XML).
        match outbox.remove(0) {
            OutboundMessage::Text { content } => {
                Some((reply::text(openid, original_id, now, &content), Format::Xml))
            }
            _ => None,
        }
    } else {
        None
    };
    let memo = match plain {
        None => Memo {
            content_type: None,
            body: reply::SUCCESS.to_string(),
        },
        Some((body, inner_format)) => {
            match envelope.key_index.and_then(|i| app.config.aes_keys.get(i)) {
                Some(key) => {
                    let random: [u8; 16] = rand::random();
                    let sealed = crypto::seal(
                        key,
                        &app.config.appid,
                        app.config.token.expose(),
                        body.as_bytes(),
                        now,
                        &envelope.nonce,
                        &random,
                    );
                    Memo {
                        content_type: Some(content_type(envelope.format).into()),
                        body: reply::encrypted(envelope.format, &sealed),
                    }
                }
                None => Memo {
                    content_type: Some(content_type(inner_format).into()),
                    body,
                },
            }
        }
    };
    (memo, outbox)
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json; charset=utf-8",
        Format::Xml => "application/xml; charset=utf-8",
    }
}

fn memo_response(memo: &Memo) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(
            memo.content_type
                .as_deref()
                .unwrap_or("text/plain; charset=utf-8"),
        )
        .body(memo.body.clone())
}

/// A failure of ours (not of the request): WeChat will retry.
fn unavailable(why: &'static str) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain; charset=utf-8")
        .body(why)
}

/// A repeated push answered from its memo.
fn count_duplicate(state: &State, app_id: &str) {
    state
        .metrics
        .duplicates
        .get_or_create(&AppLabels { app: app_id.into() })
        .inc();
}

fn count(state: &State, app_id: &str, msg: &InboundMessage, decision: &Decision) {
    let m = &state.metrics;
    m.messages
        .get_or_create(&AppTypeLabels {
            app: app_id.into(),
            r#type: msg.kind.type_name().into(),
        })
        .inc();
    if let Some(rule) = &decision.rule {
        m.rule_hits
            .get_or_create(&RuleLabels { rule: rule.clone() })
            .inc();
    }
    if let Some(faq) = &decision.faq {
        m.faq_hits
            .get_or_create(&FaqLabels { faq: faq.clone() })
            .inc();
    }
    let app = AppLabels { app: app_id.into() };
    if decision.handoff {
        m.handoffs.get_or_create(&app).inc();
    }
    match decision.action {
        Action::Clarify => {
            m.clarifies.get_or_create(&app).inc();
        }
        Action::Default | Action::Ignore => {
            m.unmatched.get_or_create(&app).inc();
        }
        _ => {}
    }
}
