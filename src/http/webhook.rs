//! `GET /wechat/{app}` (URL verification) and `POST /wechat/{app}` (a push).
//!
//! Checks run in the order SPEC §3 fixes — app, method, required parameters, timestamp window,
//! signature, body — and the body is always read first (bounded), so that a refused request
//! leaves the connection usable. A verified push is deduplicated, decided, made durable and
//! answered; the send API is called later by the outbox worker, never before the answer.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::Method;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;

use super::State;
use super::error::WebhookError;
use crate::clock::unix_now;
use crate::config::{AppConfig, AppKind, Mode};
use crate::dispatch::{self, Context, Decision};
use crate::metrics::AppLabels;
use crate::outbound::{MAX_TEXT_BYTES, OutboundMessage, split_long_texts};
use crate::protocol::message::{parse_envelope, parse_message};
use crate::protocol::{Format, InboundMessage, MsgKind, crypto, reply, signature};
use crate::rules::reload::RulesHandle;
use crate::store::{
    Claim, ClaimGuard, LogRecord, Memo, PushKey, PushRecord, Resolved, StoreError, resolve_claimed,
};

/// WeChat gives up after 5 s; answer well before.
const ANSWER_DEADLINE: Duration = Duration::from_millis(4500);
/// How much of an oversized body is drained before the connection is given up.
const DRAIN_CAP: usize = 8 * 1024 * 1024;
/// What an Official Account's fetch leaves of the answer budget for the commit and the answer.
const FETCH_RESERVE: Duration = Duration::from_millis(700);

/// One configured app with its live rules.
pub struct AppRuntime {
    pub config: AppConfig,
    pub rules: Arc<RulesHandle>,
}

/// The query of a push or a verification, borrowed from the request where it needs no decoding.
#[derive(Debug, Default)]
struct PushQuery<'q> {
    signature: Option<Cow<'q, str>>,
    timestamp: Option<Cow<'q, str>>,
    nonce: Option<Cow<'q, str>>,
    echostr: Option<Cow<'q, str>>,
    encrypt_type: Option<Cow<'q, str>>,
    msg_signature: Option<Cow<'q, str>>,
}

impl<'q> PushQuery<'q> {
    /// Parses `application/x-www-form-urlencoded` pairs as `form_urlencoded` does, copying only
    /// the pairs that are percent- or plus-encoded (WeChat's never are). Other names are
    /// ignored; a name given twice makes the whole query unreadable (every parameter missing),
    /// as a strict deserializer would.
    fn parse(query: &'q str) -> Self {
        let mut parsed = PushQuery::default();
        // Byte searches (memchr) rather than `str::split`: every delimiter is ASCII, so each
        // slice below is at a character boundary, and the pattern machinery of `str` cost as
        // much as the signature check.
        let mut rest = query;
        while !rest.is_empty() {
            let (pair, tail) = match memchr::memchr(b'&', rest.as_bytes()) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            rest = tail;
            if pair.is_empty() {
                continue;
            }
            let (name, value) = if memchr::memchr2(b'%', b'+', pair.as_bytes()).is_some() {
                match form_urlencoded::parse(pair.as_bytes()).next() {
                    Some((name, value)) => (name, value),
                    None => continue,
                }
            } else {
                let (name, value) = match memchr::memchr(b'=', pair.as_bytes()) {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, ""),
                };
                (Cow::Borrowed(name), Cow::Borrowed(value))
            };
            let slot = match name.as_ref() {
                "signature" => &mut parsed.signature,
                "timestamp" => &mut parsed.timestamp,
                "nonce" => &mut parsed.nonce,
                "echostr" => &mut parsed.echostr,
                "encrypt_type" => &mut parsed.encrypt_type,
                "msg_signature" => &mut parsed.msg_signature,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return PushQuery::default();
            }
        }
        parsed
    }
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
    let deadline = started + Duration::from_secs(state.settings.request_timeout_secs);
    let result = handle(&req, app.as_deref(), payload, &state, started, deadline).await;
    state
        .metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    result.unwrap_or_else(|error| {
        let app = app.as_ref().map(|a| a.config.id.as_str()).unwrap_or("-");
        let status = error.status_code().as_u16();
        if error.is_ours() {
            tracing::error!(app, status, error = %error, "push not answered");
        } else {
            state.metrics.refuse(error.reason());
            tracing::warn!(
                app,
                path = req.path(),
                method = %req.method(),
                status,
                reason = %error,
                "refused request"
            );
        }
        error.error_response()
    })
}

/// Reads the body of a verified request up to `limit` bytes; beyond it, drains (bounded) and
/// reports `TooLarge`. A body not complete by `deadline` is `Timeout`: a client trickling bytes
/// holds neither the socket nor the buffer past it.
async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, WebhookError> {
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut body = BytesMut::new();
    let mut oversize = 0usize;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
            Err(_) => return Err(WebhookError::Timeout),
            Ok(None) => break,
            Ok(Some(chunk)) => chunk.map_err(|_| WebhookError::BodyRead)?,
        };
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
        return Err(WebhookError::TooLarge);
    }
    Ok(body.freeze())
}

/// Reads and drops the body of a refused request (bounded), so that a well-behaved client's
/// connection stays usable; nothing of it is kept, so an unsigned request costs no memory
/// however large or slow its body.
async fn discard(mut payload: web::Payload, deadline: Instant) -> Result<(), WebhookError> {
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut drained = 0usize;
    loop {
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Err(_) => return Err(WebhookError::Timeout),
            Ok(Some(Ok(chunk))) => {
                drained += chunk.len();
                if drained > DRAIN_CAP {
                    return Ok(());
                }
            }
            Ok(None | Some(Err(_))) => return Ok(()),
        }
    }
}

/// How the push arrived, so that the answer goes back the same way.
struct Envelope {
    format: Format,
    /// The index of the AES key that decrypted the push; `None` for plaintext.
    key_index: Option<usize>,
    nonce: String,
}

/// The checked query of a request: what [`verify`] lets through.
struct Verified<'q> {
    timestamp: &'q str,
    nonce: &'q str,
    /// Present for an encrypted push.
    msg_signature: Option<&'q str>,
}

async fn handle(
    req: &HttpRequest,
    app: Option<&AppRuntime>,
    payload: web::Payload,
    state: &State,
    started: Instant,
    deadline: Instant,
) -> Result<HttpResponse, WebhookError> {
    let query = PushQuery::parse(req.query_string());
    let is_get = req.method() == Method::GET;
    // Everything that can be checked without the body is checked first: a refused request's
    // body is read and dropped, never kept.
    let checked = app.ok_or(WebhookError::UnknownApp).and_then(|app| {
        if !is_get && req.method() != Method::POST {
            return Err(WebhookError::Method);
        }
        Ok((
            app,
            verify(&query, is_get, app, state.settings.max_timestamp_skew_secs)?,
        ))
    });
    let (app, verified) = match checked {
        Ok(checked) => checked,
        Err(refusal) => {
            discard(payload, deadline).await?;
            return Err(refusal);
        }
    };
    let body = read_body(payload, state.settings.max_body_bytes, deadline).await?;
    if is_get {
        let echostr = query.echostr.unwrap_or_default().into_owned();
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(echostr));
    }
    let (envelope, msg) = open(app, &verified, &body)?;
    process(app, envelope, msg, state, started).await
}

/// Required parameters, timestamp window, signature, mode — in the order of SPEC §3.
fn verify<'q>(
    query: &'q PushQuery<'_>,
    is_get: bool,
    app: &AppRuntime,
    skew: u64,
) -> Result<Verified<'q>, WebhookError> {
    let signature = query
        .signature
        .as_deref()
        .ok_or(WebhookError::MissingParam("signature"))?;
    let timestamp = query
        .timestamp
        .as_deref()
        .ok_or(WebhookError::MissingParam("timestamp"))?;
    let nonce = query
        .nonce
        .as_deref()
        .ok_or(WebhookError::MissingParam("nonce"))?;
    let encrypted = query.encrypt_type.as_deref() == Some("aes");
    if is_get && query.echostr.is_none() {
        return Err(WebhookError::MissingParam("echostr"));
    }
    let msg_signature = if !is_get && encrypted {
        Some(
            query
                .msg_signature
                .as_deref()
                .ok_or(WebhookError::MissingParam("msg_signature"))?,
        )
    } else {
        None
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::BadTimestamp)?;
    // abs_diff: a timestamp near i64::MIN must not overflow a subtraction.
    if skew > 0 && unix_now().abs_diff(ts) > skew {
        return Err(WebhookError::StaleTimestamp);
    }
    if !signature::verify(signature, &[app.config.token.expose(), timestamp, nonce]) {
        return Err(WebhookError::BadSignature);
    }
    if !is_get {
        match (app.config.mode, encrypted) {
            (Mode::Safe, false) => return Err(WebhookError::PlaintextRefused),
            (Mode::Plaintext, true) => return Err(WebhookError::EncryptedRefused),
            _ => {}
        }
    }
    Ok(Verified {
        timestamp,
        nonce,
        msg_signature,
    })
}

/// The body: checked against `msg_signature` and decrypted when encrypted, then parsed.
fn open(
    app: &AppRuntime,
    verified: &Verified<'_>,
    body: &[u8],
) -> Result<(Envelope, InboundMessage), WebhookError> {
    let nonce = verified.nonce.to_string();
    let Some(msg_signature) = verified.msg_signature else {
        let (format, msg) = parse_message(body)?;
        return Ok((
            Envelope {
                format,
                key_index: None,
                nonce,
            },
            msg,
        ));
    };
    let outer = parse_envelope(body)?;
    let encrypt = outer.encrypt.ok_or(WebhookError::NoEncrypt)?;
    let token = app.config.token.expose();
    if !signature::verify(
        msg_signature,
        &[token, verified.timestamp, verified.nonce, &encrypt],
    ) {
        return Err(WebhookError::BadMsgSignature);
    }
    let (key_index, plain) =
        crypto::decrypt_with_any(&app.config.aes_keys, &encrypt, &app.config.appid)?;
    let (_, msg) = parse_message(&plain)?;
    Ok((
        Envelope {
            format: outer.format,
            key_index: Some(key_index),
            nonce,
        },
        msg,
    ))
}

/// Dedupe, decide, commit, answer.
async fn process(
    app: &AppRuntime,
    envelope: Envelope,
    msg: InboundMessage,
    state: &State,
    started: Instant,
) -> Result<HttpResponse, WebhookError> {
    let deadline = tokio::time::Instant::from_std(started) + ANSWER_DEADLINE;
    let app_id = app.config.id.as_str();
    let key = PushKey::of(app_id, &msg);
    let now = unix_now();
    let store_failed = |op: &'static str, source: StoreError| {
        state.store_health.failed(op, &source);
        WebhookError::Store { op, source }
    };

    // The claim and the user's session are asked for at once: a shared store answers both in
    // one round trip. A repeated push wastes the session read.
    let first = tokio::time::timeout_at(
        deadline,
        futures_util::future::join(
            state.store.claim(&key, now),
            state.store.session(app_id, &msg.from_user_name, now),
        ),
    )
    .await;
    let (claim, early_session) = match first {
        Ok((Ok(claim), session)) => (claim, session),
        Ok((Err(e), _)) => return Err(store_failed("claim", e)),
        Err(_) => {
            state.metrics.store_error("claim_deadline");
            return Err(WebhookError::StoreTooSlow);
        }
    };
    // A repeated push gets the first answer; one still in flight is waited for. A push that
    // waited reads its session again: the user's other pushes may have changed it meanwhile.
    let waited = matches!(claim, Claim::InFlight(_));
    let resolved = resolve_claimed(&*state.store, &key, now, claim);
    match tokio::time::timeout_at(deadline, resolved).await {
        Ok(Ok(Resolved::New)) => {}
        Ok(Ok(Resolved::Replay(memo))) => {
            count_duplicate(state, app_id);
            tracing::info!(app = app_id, openid = %msg.from_user_name, "repeated push answered from memo");
            return Ok(memo_response(&memo));
        }
        Ok(Err(e)) => return Err(store_failed("claim", e)),
        Err(_) => return Err(WebhookError::InFlight),
    }
    // Until the record is handed to the store, dropping this (an early return, or the client
    // going away mid-request) releases the claim for WeChat's retry.
    let guard = ClaimGuard::new(&*state.store, key.clone());

    let session = if waited {
        match tokio::time::timeout_at(
            deadline,
            state.store.session(app_id, &msg.from_user_name, now),
        )
        .await
        {
            Ok(session) => session,
            Err(_) => {
                state.metrics.store_error("session_deadline");
                return Err(WebhookError::StoreTooSlow);
            }
        }
    } else {
        early_session
    }
    .map_err(|e| store_failed("session", e))?;
    let rules = app.rules.current();
    let ctx = Context::at_unix(
        now,
        state.settings.tz,
        app.config.handoff_minutes,
        state.settings.faq.menu_ttl_secs,
    )
    .with_pick(rand::random());
    let mut decision = dispatch::decide(&rules, &msg, &session, &ctx);
    if app.config.kind == AppKind::OfficialAccount {
        // The passive reply carries the fetched text: the call waits, within the answer budget.
        let budget_end = deadline - FETCH_RESERVE;
        fetch_inline(app_id, &msg, &mut decision.replies, state, budget_end).await;
    }
    // The bot's side of the conversation log, before `answer` takes the replies.
    let bot_side: Vec<String> = decision.replies.iter().map(|r| r.preview()).collect();
    let (memo, outbox) = answer(app, &envelope, &msg, &mut decision, now);
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
            msg_type: msg.kind.type_name_for_log(),
            text: dispatch::message_text(&msg.kind).map(str::to_string),
            rule: decision.rule.clone(),
            faq: decision.faq.clone(),
            action: decision.action.as_str().into(),
            handoff: decision.handoff,
            replies: bot_side,
            event: match &msg.kind {
                MsgKind::Event { event, .. } => Some(event.clone()),
                _ => None,
            },
            agent: match &msg.kind {
                MsgKind::Event { kf_account, .. } => kf_account.clone(),
                _ => None,
            },
        },
    };
    // A push that queues messages, or changes the user's session (a menu, a handoff), is
    // answered only once that is durable and visible (SPEC §6; the user's next message must see
    // the session). One that changes neither is answered at once: its memo and log follow in the
    // same group commit, and if kefu died before that commit, WeChat's retry would simply be
    // decided again, with nothing sent twice because nothing is sent at all. Either way the
    // push is counted in the metrics only once it is recorded (the store's `on_recorded`).
    let must_wait = !record.outbox.is_empty() || record.session.is_some();
    let ticket = state.store.commit(record);
    // The writer owns the claim now: it resolves it, or releases it if the commit fails.
    guard.committed();
    if !must_wait {
        log_push(app_id, &msg, &decision, started);
        return Ok(response);
    }
    match tokio::time::timeout_at(deadline, ticket).await {
        Ok(Ok(Ok(report))) => {
            // A late retry whose memo had left memory: the first answer, found on disk.
            if let Some(replay) = report.replay {
                count_duplicate(state, app_id);
                return Ok(memo_response(&replay));
            }
            if !report.dropped.is_empty() {
                for _ in &report.dropped {
                    state.metrics.send_outcome("dropped");
                }
                // The texts stay out of the log (they are in the send log, for `kefu stats`).
                tracing::warn!(app = app_id, openid = %msg.from_user_name, dropped = report.dropped.len(), "replies over the send quota were not queued");
            }
        }
        Ok(Ok(Err(e))) => return Err(store_failed("commit", e)),
        Ok(Err(_)) => return Err(store_failed("commit", StoreError::Closed)),
        Err(_) => {
            state.metrics.store_error("commit_deadline");
            return Err(WebhookError::StoreTooSlow);
        }
    }
    log_push(app_id, &msg, &decision, started);
    Ok(response)
}

/// The one log line of an answered push.
/// An Official Account's fetch replies, made now (each within its `timeout_ms` and what is left
/// of the answer budget) and replaced by their text, so that the first can be the passive reply.
async fn fetch_inline(
    app: &str,
    msg: &InboundMessage,
    replies: &mut [OutboundMessage],
    state: &State,
    budget_end: tokio::time::Instant,
) {
    for reply in replies.iter_mut() {
        if let OutboundMessage::Fetch(fetch) = reply {
            let budget = budget_end.saturating_duration_since(tokio::time::Instant::now());
            let caller = crate::fetch::Caller {
                app,
                openid: &msg.from_user_name,
            };
            let composed = state.fetcher.compose(caller, fetch, Some(budget)).await;
            *reply = OutboundMessage::text(composed.text);
        }
    }
}

fn log_push(app: &str, msg: &InboundMessage, decision: &Decision, started: Instant) {
    tracing::info!(
        app,
        openid = %msg.from_user_name,
        msg_type = msg.kind.label(),
        rule = decision.rule.as_deref().unwrap_or("-"),
        faq = decision.faq.as_deref().unwrap_or("-"),
        action = decision.action.as_str(),
        latency_us = started.elapsed().as_micros() as u64,
        "push"
    );
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
        && matches!(outbox.first(), Some(OutboundMessage::Text { content }) if content.len() <= MAX_TEXT_BYTES)
    {
        // A text too long for one message goes whole through the send API, in parts, so that
        // its parts cannot arrive out of order around a passive reply.
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
    let outbox = split_long_texts(outbox);
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

/// A repeated push answered from its memo.
fn count_duplicate(state: &State, app_id: &str) {
    state
        .metrics
        .duplicates
        .get_or_create(&AppLabels { app: app_id.into() })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::PushQuery;

    #[test]
    fn a_plain_query_is_borrowed_and_unknown_names_are_ignored() {
        let q = PushQuery::parse("signature=abc&timestamp=17&&nonce=n1&openid=o&echostr");
        assert_eq!(q.signature.as_deref(), Some("abc"));
        assert_eq!(q.timestamp.as_deref(), Some("17"));
        assert_eq!(q.nonce.as_deref(), Some("n1"));
        assert_eq!(q.echostr.as_deref(), Some(""));
        assert!(q.encrypt_type.is_none() && q.msg_signature.is_none());
        assert!(matches!(q.signature, Some(std::borrow::Cow::Borrowed(_))));
    }

    #[test]
    fn encoded_values_are_decoded_as_form_urlencoded_does() {
        let q = PushQuery::parse("echostr=a+b%2Bc%E4%BD%A0&encrypt%5Ftype=aes&nonce=%zz");
        assert_eq!(q.echostr.as_deref(), Some("a b+c你"));
        assert_eq!(q.encrypt_type.as_deref(), Some("aes"));
        assert_eq!(q.nonce.as_deref(), Some("%zz"));
    }

    /// Asserts that `parse` reads each parameter of `query` (which names none twice) as
    /// `form_urlencoded` does.
    fn reads_as_form_urlencoded(query: &str) {
        let q = PushQuery::parse(query);
        let reference: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let expected = |name: &str| {
            reference
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        for (name, got) in [
            ("signature", &q.signature),
            ("timestamp", &q.timestamp),
            ("nonce", &q.nonce),
            ("echostr", &q.echostr),
            ("encrypt_type", &q.encrypt_type),
            ("msg_signature", &q.msg_signature),
        ] {
            assert_eq!(got.as_deref(), expected(name), "{name} of {query:?}");
        }
    }

    #[test]
    fn raw_non_ascii_text_and_stray_separators_are_read_as_form_urlencoded_does() {
        reads_as_form_urlencoded("&&nonce=你好=x&signature=&timestamp&");
        reads_as_form_urlencoded("signature=abc&timestamp=17&&nonce=n1&openid=o&echostr");
        reads_as_form_urlencoded("echostr=a+b%2Bc%E4%BD%A0&encrypt%5Ftype=aes&nonce=%zz");
        reads_as_form_urlencoded("=&msg_signature==&&&");
        let q = PushQuery::parse("&&nonce=你好=x&signature=&timestamp&");
        assert_eq!(q.nonce.as_deref(), Some("你好=x"));
    }

    #[test]
    fn a_name_given_twice_leaves_every_parameter_missing() {
        let q = PushQuery::parse("signature=a&nonce=n&signature=b");
        assert!(q.signature.is_none() && q.nonce.is_none());
    }
}
