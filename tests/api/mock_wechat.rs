//! A scriptable stand-in for WeChat's API, for black-box tests: a real HTTP server on
//! `127.0.0.1:0` (actix-web, one worker), stopped when dropped.
//!
//! - `POST /cgi-bin/stable_token` issues `tok-1`, `tok-2`, … (one new token per fetch) with
//!   `expires_in` 7200 unless [`MockWechat::set_expires_in`] says otherwise. Scripted replies
//!   ([`MockWechat::script_token`]) are used first: an errcode, an HTTP status, a delay.
//! - `POST /cgi-bin/message/custom/send` answers `{"errcode":0,"errmsg":"ok"}` unless a reply
//!   was scripted ([`MockWechat::script_send`], one per call, in arrival order). A missing
//!   `access_token` gets 41001; a token refused with [`MockWechat::reject_token`] gets its
//!   errcode on every call, without consuming the script.
//! - Replies can be delayed ([`MockReply::delayed`]) or held until a [`MockGate`] opens
//!   ([`MockReply::held`]), to order concurrent calls without sleeping in the test.
//! - `POST /cgi-bin/media/upload?type=image` checks the multipart body (one field `media` with a
//!   file name and an image content type, non-empty) and hands out `mock-media-1`, `mock-media-2`,
//!   …; the test expires them ([`MockWechat::expire_media`]). A send naming a `mock-media-…` id
//!   that is unknown or expired gets errcode 40007, as WeChat answers for forgotten media.
//! - Every request is recorded ([`MockWechat::requests`]); sends also as [`RecordedSend`].
//!
//! ```ignore
//! let mock = MockWechat::start().await;
//! mock.script_send(vec![MockReply::errcode(45015)]);
//! // point the app's api_base at mock.base_url(), make it send…
//! let sends = mock.wait_for_sends(1, Duration::from_secs(5)).await;
//! assert_eq!(sends[0].body["text"]["content"], "hello");
//! ```
#![allow(dead_code)] // shared by several test files; each uses a part of it

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use tokio::sync::watch;

/// One scripted answer of the mock.
#[derive(Debug, Clone, PartialEq)]
pub struct MockReply {
    /// HTTP status; anything but 200 is sent with a plain-text body.
    pub status: u16,
    /// The errcode of a 200 answer; 0 means success (a token, or `ok`).
    pub errcode: i64,
    /// How long the mock waits before answering.
    pub delay: Duration,
    /// A body sent as is, instead of the one `status` and `errcode` would give.
    pub raw_body: Option<String>,
    /// If set, the answer waits until this gate is opened (after `delay`).
    pub gate: Option<MockGate>,
}

/// Holds back the answers given [`MockReply::held`] until [`MockGate::open`]: orders events
/// across concurrent requests without sleeping.
#[derive(Debug, Clone)]
pub struct MockGate(Arc<watch::Sender<bool>>);

impl Default for MockGate {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for MockGate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl MockGate {
    pub fn new() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }

    /// Lets every held answer (present and future) go.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn passed(&self) {
        let mut open = self.0.subscribe();
        let _ = open.wait_for(|&open| open).await;
    }

    /// Waits until the gate is open (for other test servers that hold their answers).
    pub async fn passed_public(&self) {
        self.passed().await;
    }
}

impl MockReply {
    /// Success: a new token, or `{"errcode":0,"errmsg":"ok"}`.
    pub fn ok() -> Self {
        Self {
            status: 200,
            errcode: 0,
            delay: Duration::ZERO,
            raw_body: None,
            gate: None,
        }
    }

    /// HTTP 200 with `{"errcode":code,"errmsg":"mock errcode <code>"}`.
    pub fn errcode(code: i64) -> Self {
        Self {
            errcode: code,
            ..Self::ok()
        }
    }

    /// This HTTP status with a plain-text body.
    pub fn http(status: u16) -> Self {
        Self {
            status,
            ..Self::ok()
        }
    }

    /// HTTP 200 with this body, as is.
    pub fn raw(body: &str) -> Self {
        Self {
            raw_body: Some(body.to_string()),
            ..Self::ok()
        }
    }

    /// The same answer, given after `delay`.
    pub fn delayed(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }

    /// The same answer, given only once `gate` is open.
    pub fn held(self, gate: &MockGate) -> Self {
        Self {
            gate: Some(gate.clone()),
            ..self
        }
    }
}

/// One call of `custom/send`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSend {
    /// The `access_token` query parameter ("" when missing).
    pub access_token: String,
    /// The body parsed as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    /// The body as sent, to check it is raw UTF-8.
    pub raw: String,
    /// The `Content-Type` header ("" when missing).
    pub content_type: String,
}

/// One call of `media/upload`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedUpload {
    /// The `access_token` query parameter.
    pub access_token: String,
    /// The `type` query parameter.
    pub kind: String,
    /// The part's file name.
    pub filename: String,
    /// The part's content type.
    pub content_type: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// The media_id handed out (`None` when the upload was refused).
    pub media_id: Option<String>,
}

/// Any request the mock received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// The body parsed as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
}

/// A running mock; stopped when dropped.
pub struct MockWechat {
    /// `http://127.0.0.1:<port>`
    base_url: String,
    /// Shared with the handlers.
    state: Arc<Shared>,
    /// Stops the server on drop.
    server: ServerHandle,
}

struct Shared {
    /// Scripts and records.
    inner: Mutex<Inner>,
    /// Number of `custom/send` calls so far; lets tests wait without sleeping.
    sends_seen: watch::Sender<usize>,
}

struct Inner {
    /// Tokens issued so far; the next is `tok-{issued + 1}`.
    issued: u64,
    /// `expires_in` of issued tokens.
    expires_in: u64,
    /// Answers for the next token fetches.
    token_script: VecDeque<MockReply>,
    /// Answers for the next sends.
    send_script: VecDeque<MockReply>,
    /// Tokens refused on every send, with the errcode to answer.
    rejected: HashMap<String, i64>,
    /// Bodies of token requests.
    token_requests: Vec<Value>,
    /// Sends, in arrival order.
    sends: Vec<RecordedSend>,
    /// Every request, in arrival order.
    requests: Vec<RecordedRequest>,
    /// Uploads, in arrival order.
    uploads: Vec<RecordedUpload>,
    /// Media ids handed out, and whether WeChat still knows them.
    media: HashMap<String, bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MockWechat {
    /// Starts a mock on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Shared {
            inner: Mutex::new(Inner {
                issued: 0,
                expires_in: 7200,
                token_script: VecDeque::new(),
                send_script: VecDeque::new(),
                rejected: HashMap::new(),
                token_requests: Vec::new(),
                sends: Vec::new(),
                requests: Vec::new(),
                uploads: Vec::new(),
                media: HashMap::new(),
            }),
            sends_seen: watch::Sender::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/cgi-bin/stable_token", web::post().to(stable_token))
                .route("/cgi-bin/message/custom/send", web::post().to(custom_send))
                .route("/cgi-bin/media/upload", web::post().to(media_upload))
                .default_service(web::to(other))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            state,
            server: handle,
        }
    }

    /// What to put in `api_base`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// `expires_in` of the tokens issued from now on (default 7200).
    pub fn set_expires_in(&self, secs: u64) {
        self.state.lock().expires_in = secs;
    }

    /// Answers for the next token fetches, in order; then tokens again.
    pub fn script_token(&self, replies: Vec<MockReply>) {
        self.state.lock().token_script.extend(replies);
    }

    /// Answers for the next sends, in arrival order; then `ok` again.
    pub fn script_send(&self, replies: Vec<MockReply>) {
        self.state.lock().send_script.extend(replies);
    }

    /// From now on every send with `token` gets `errcode` (40001, 40014, 42001…).
    pub fn reject_token(&self, token: &str, errcode: i64) {
        self.state
            .lock()
            .rejected
            .insert(token.to_string(), errcode);
    }

    /// The API is back: scripted send answers and refused tokens are forgotten; every send is
    /// accepted again.
    pub fn api_up(&self) {
        let mut inner = self.state.lock();
        inner.send_script.clear();
        inner.rejected.clear();
    }

    /// How many times `stable_token` was called (failures included).
    pub fn token_fetches(&self) -> usize {
        self.state.lock().token_requests.len()
    }

    /// The JSON bodies of the `stable_token` calls, in order.
    pub fn token_requests(&self) -> Vec<Value> {
        self.state.lock().token_requests.clone()
    }

    /// The `custom/send` calls so far, in arrival order.
    pub fn sends(&self) -> Vec<RecordedSend> {
        self.state.lock().sends.clone()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().requests.clone()
    }

    /// The `media/upload` calls so far, in arrival order.
    pub fn uploads(&self) -> Vec<RecordedUpload> {
        self.state.lock().uploads.clone()
    }

    /// WeChat forgets `media_id` (a temporary media's 3 days are over): sends naming it get
    /// 40007 from now on.
    pub fn expire_media(&self, media_id: &str) {
        self.state.lock().media.insert(media_id.to_string(), false);
    }

    /// Waits until at least `n` sends arrived and returns them all; panics after `within`.
    pub async fn wait_for_sends(&self, n: usize, within: Duration) -> Vec<RecordedSend> {
        let mut seen = self.state.sends_seen.subscribe();
        let arrived = tokio::time::timeout(within, seen.wait_for(|&count| count >= n)).await;
        if arrived.is_err() {
            panic!(
                "expected {n} sends within {within:?}, got {:?}",
                self.sends()
            );
        }
        self.sends()
    }
}

impl Drop for MockWechat {
    fn drop(&mut self) {
        // The stop command is sent by `stop` itself; its future only waits for completion.
        drop(self.server.stop(false));
    }
}

fn record(state: &Shared, req: &HttpRequest, body: &[u8]) -> Value {
    let json = serde_json::from_slice(body).unwrap_or(Value::Null);
    state.lock().requests.push(RecordedRequest {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        body: json.clone(),
    });
    json
}

async fn answer(reply: MockReply, success: Value) -> HttpResponse {
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if let Some(gate) = &reply.gate {
        gate.passed().await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(body) = reply.raw_body {
        return HttpResponse::build(status).body(body);
    }
    if status != StatusCode::OK {
        return HttpResponse::build(status).body(format!("mock HTTP {}", reply.status));
    }
    if reply.errcode != 0 {
        return HttpResponse::Ok().json(json!({
            "errcode": reply.errcode,
            "errmsg": format!("mock errcode {}", reply.errcode),
        }));
    }
    HttpResponse::Ok().json(success)
}

async fn stable_token(
    state: web::Data<Shared>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let json = record(&state, &req, &body);
    let (reply, success) = {
        let mut inner = state.lock();
        inner.token_requests.push(json);
        let reply = inner.token_script.pop_front().unwrap_or_else(MockReply::ok);
        let success = if reply.status == 200 && reply.errcode == 0 && reply.raw_body.is_none() {
            inner.issued += 1;
            json!({"access_token": format!("tok-{}", inner.issued), "expires_in": inner.expires_in})
        } else {
            Value::Null
        };
        (reply, success)
    };
    answer(reply, success).await
}

async fn custom_send(state: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let json = record(&state, &req, &body);
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let token = query.get("access_token").cloned().unwrap_or_default();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let reply = {
        let mut inner = state.lock();
        inner.sends.push(RecordedSend {
            access_token: token.clone(),
            body: json,
            raw: String::from_utf8_lossy(&body).into_owned(),
            content_type,
        });
        let media_id = json_media_id(
            &inner
                .sends
                .last()
                .map(|s| s.body.clone())
                .unwrap_or_default(),
        );
        let forgotten = media_id
            .as_deref()
            .is_some_and(|id| id.starts_with("mock-media-") && inner.media.get(id) != Some(&true));
        if token.is_empty() {
            MockReply::errcode(41001)
        } else if let Some(&code) = inner.rejected.get(&token) {
            MockReply::errcode(code)
        } else if forgotten {
            MockReply::errcode(40007)
        } else {
            inner.send_script.pop_front().unwrap_or_else(MockReply::ok)
        }
    };
    state.sends_seen.send_modify(|count| *count += 1);
    answer(reply, json!({"errcode": 0, "errmsg": "ok"})).await
}

async fn other(state: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    record(&state, &req, &body);
    HttpResponse::NotFound().body("mock: no such API")
}

/// The media_id a send names (`image.media_id` or `miniprogrampage.thumb_media_id`).
fn json_media_id(body: &Value) -> Option<String> {
    body["image"]["media_id"]
        .as_str()
        .or_else(|| body["miniprogrampage"]["thumb_media_id"].as_str())
        .map(str::to_string)
}

/// One part of a `multipart/form-data` body.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: String,
    bytes: Vec<u8>,
}

/// Splits a `multipart/form-data` body at its boundary (RFC 7578), strictly enough for a test.
fn multipart_parts(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_string())
        .ok_or("no boundary in Content-Type")?;
    if !content_type.starts_with("multipart/form-data") {
        return Err(format!("Content-Type is {content_type:?}"));
    }
    let delimiter = format!("--{boundary}");
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes(), 0).ok_or("no first boundary")?;
    loop {
        let start = at + delimiter.len();
        if body.get(start..start + 2) == Some(b"--") {
            return Ok(parts);
        }
        let headers_start = start + 2; // CRLF
        let headers_end = find(body, b"\r\n\r\n", headers_start).ok_or("part without headers")?;
        let headers = String::from_utf8_lossy(&body[headers_start..headers_end]).to_string();
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), headers_end)
            .ok_or("part without end")?;
        let bytes = body[headers_end + 4..next].to_vec();
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: String::new(),
            bytes,
        };
        for line in headers.split("\r\n") {
            let (key, value) = line.split_once(':').ok_or("bad part header")?;
            match key.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for item in value.split(';').map(str::trim) {
                        if let Some(v) = item.strip_prefix("name=") {
                            part.name = v.trim_matches('"').to_string();
                        } else if let Some(v) = item.strip_prefix("filename=") {
                            part.filename = Some(v.trim_matches('"').to_string());
                        }
                    }
                }
                "content-type" => part.content_type = value.trim().to_string(),
                _ => {}
            }
        }
        parts.push(part);
        at = next + 2;
    }
}

async fn media_upload(
    state: web::Data<Shared>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    record(&state, &req, &body);
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let token = query.get("access_token").cloned().unwrap_or_default();
    let kind = query.get("type").cloned().unwrap_or_default();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let checked = multipart_parts(&content_type, &body).and_then(|parts| {
        let [part] = <[Part; 1]>::try_from(parts).map_err(|p| format!("{} parts", p.len()))?;
        if part.name != "media" {
            return Err(format!("field {:?}, not media", part.name));
        }
        match &part.filename {
            Some(f) if !f.is_empty() => {}
            _ => return Err("no filename".into()),
        }
        if !matches!(part.content_type.as_str(), "image/png" | "image/jpeg") {
            return Err(format!("content type {:?}", part.content_type));
        }
        if part.bytes.is_empty() {
            return Err("empty file".into());
        }
        Ok(part)
    });
    let mut inner = state.lock();
    let (answer, recorded) = match checked {
        _ if token.is_empty() => (
            json!({"errcode": 41001, "errmsg": "access_token missing"}),
            None,
        ),
        _ if kind != "image" => (
            json!({"errcode": 40004, "errmsg": "invalid media type"}),
            None,
        ),
        Err(reason) => (
            json!({"errcode": 41005, "errmsg": format!("media data missing: {reason}")}),
            None,
        ),
        Ok(part) => {
            let id = format!("mock-media-{}", inner.uploads.len() + 1);
            inner.media.insert(id.clone(), true);
            (
                json!({"type": "image", "media_id": id, "created_at": chrono::Utc::now().timestamp()}),
                Some((part, id)),
            )
        }
    };
    let upload = match recorded {
        Some((part, id)) => RecordedUpload {
            access_token: token,
            kind,
            filename: part.filename.unwrap_or_default(),
            content_type: part.content_type,
            bytes: part.bytes,
            media_id: Some(id),
        },
        None => RecordedUpload {
            access_token: token,
            kind,
            filename: String::new(),
            content_type,
            bytes: Vec::new(),
            media_id: None,
        },
    };
    inner.uploads.push(upload);
    HttpResponse::Ok().json(answer)
}
