//! [`WechatClient`]: sends one message through `cgi-bin/message/custom/send` and says what
//! became of it, as a [`SendOutcome`] the outbox worker can act on.
//!
//! One send is: get the app's token ([`super::token`]), POST the body, classify the answer
//! ([`super::errcode`]). If WeChat refuses the token (40001/40014/42001), the token is expired
//! (compare-and-expire), a new one fetched, and the send made once more; a second refusal is a
//! `Retry` and lets the next fetch use `force_refresh` (see [`super::token`] for the policy).
//! Dry-run apps never reach the network: the would-be call is logged and kept in memory.
//!
//! Nothing here retries with backoff or stores anything: that is the outbox worker's job. Tokens
//! and secrets never reach a log line or a reason string; reqwest errors are stripped of their
//! URL because it carries the token.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::OpenId;
use super::body;
use super::clock::Clock;
use super::dry_run::{DryRunLog, DryRunSend};
use super::errcode::{self, NOT_FROM_WECHAT, SendClass, TokenClass};
use super::token::{
    AccessToken, FetchMode, Fetched, Invalidate, TokenError, TokenPolicy, TokenSlot,
};
use super::{BoxFuture, Deliver, SendOutcome};
use crate::outbound::OutboundMessage;
use crate::secret::Secret;

/// WeChat's answers are a few hundred bytes; anything past this is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How the client behaves; `Default` is what production uses.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Upper bound on one HTTP request, connect to last byte (token fetch or send).
    pub request_timeout: Duration,
    /// A token is replaced this long before WeChat says it expires (protocol doc §7.2: 5 min).
    pub token_refresh_margin: Duration,
    /// The least time between two `force_refresh: true` token fetches of one app.
    pub force_refresh_min_interval: Duration,
    /// How many dry-run sends [`WechatClient::dry_run_sends`] remembers.
    pub dry_run_capacity: usize,
    /// What decides that a token is stale; [`Clock::System`] except in tests.
    pub clock: Clock,
    /// Told of every token fetch (for `kefu_token_fetches_total`).
    pub on_token_fetch: Option<TokenFetchHook>,
    /// The fleet's shared token (several instances on one store, SPEC §8); `None`: this
    /// process's cache is the only one.
    pub token_share: Option<Arc<dyn super::TokenShare>>,
}

/// Called after each `stable_token` fetch with the kefu app id and whether it gave a token.
#[derive(Clone)]
pub struct TokenFetchHook(pub Arc<TokenFetchFn>);

/// `(kefu app id, fetched)`.
pub type TokenFetchFn = dyn Fn(&str, bool) + Send + Sync;

impl fmt::Debug for TokenFetchHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenFetchHook")
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            token_refresh_margin: Duration::from_secs(300),
            force_refresh_min_interval: Duration::from_secs(2 * 3600),
            dry_run_capacity: 100,
            clock: Clock::System,
            on_token_fetch: None,
            token_share: None,
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("api_base {api_base:?} is not an http(s) URL: {message}")]
    ApiBase { api_base: String, message: String },
    #[error("apps[].id {0:?} appears twice")]
    DuplicateApp(String),
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// The WeChat API client of every configured app. Cheap to clone; clones share tokens and the
/// dry-run record.
#[derive(Clone)]
pub struct WechatClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// One connection pool for every app.
    http: reqwest::Client,
    /// `{api_base}/cgi-bin/stable_token`
    token_url: String,
    /// `{api_base}/cgi-bin/message/custom/send`
    send_url: String,
    /// `{api_base}/cgi-bin/media/upload`
    upload_url: String,
    /// By kefu app id.
    apps: HashMap<String, App>,
    /// What dry-run apps would have sent.
    dry_runs: DryRunLog,
    /// See [`ClientOptions::on_token_fetch`].
    on_token_fetch: Option<TokenFetchHook>,
    /// See [`ClientOptions::token_share`].
    token_share: Option<Arc<dyn super::TokenShare>>,
    /// [`ClientOptions::token_refresh_margin`]: a shared token closer to its expiry is refetched.
    token_margin: Duration,
}

/// One app as the client sees it.
enum App {
    /// `effective_dry_run()`: log and record, never send.
    DryRun,
    /// Sends for real.
    Live(Box<LiveApp>),
}

/// What a sending app needs.
struct LiveApp {
    /// The kefu app id (metrics labels).
    id: String,
    /// The WeChat appid, for `stable_token`.
    appid: String,
    /// The AppSecret, for `stable_token`; never logged.
    secret: Secret,
    /// The app's token cache.
    token: TokenSlot,
}

impl fmt::Debug for WechatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut apps: Vec<(&str, bool)> = self
            .inner
            .apps
            .iter()
            .map(|(id, app)| (id.as_str(), matches!(app, App::DryRun)))
            .collect();
        apps.sort();
        f.debug_struct("WechatClient")
            .field("send_url", &self.inner.send_url)
            .field("apps (id, dry_run)", &apps)
            .finish()
    }
}

/// The part of every WeChat answer kefu reads. A missing errcode means success, as wechatpy
/// reads it.
#[derive(Deserialize)]
struct ApiReply {
    /// 0 for success.
    #[serde(default)]
    errcode: i64,
    /// WeChat's explanation, with a request id (`rid`) worth quoting to WeChat support.
    #[serde(default)]
    errmsg: String,
}

/// A `stable_token` answer: a token, or an errcode.
#[derive(Deserialize)]
struct TokenReply {
    /// The token, on success.
    #[serde(default)]
    access_token: Option<String>,
    /// Its lifetime in seconds (7200), on success.
    #[serde(default)]
    expires_in: Option<u64>,
    /// Non-zero on failure.
    #[serde(default)]
    errcode: i64,
    /// WeChat's explanation of a failure.
    #[serde(default)]
    errmsg: String,
}

/// An HTTP exchange that got an answer.
struct Answer {
    /// The HTTP status.
    status: StatusCode,
    /// The body, cut at [`MAX_RESPONSE_BYTES`].
    body: Vec<u8>,
}

/// One POST to `custom/send`, before deciding whether to go again.
/// An image WeChat took as temporary media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The id to send it by.
    pub media_id: String,
    /// WeChat's `created_at` (unix seconds), when it sent one.
    pub created_at: Option<i64>,
}

enum UploadAttempt {
    Done(SendOutcome),
    TokenRejected(i64),
}

enum Attempt {
    /// Final for this delivery.
    Done(SendOutcome),
    /// The token was refused with this errcode and errmsg.
    TokenRejected(i64, String),
}

/// One app as the client sees it: what `stable_token` needs, or that it only records (start-up
/// builds these from kefu.yaml's apps).
#[derive(Debug, Clone)]
pub struct ClientApp {
    /// The kefu app id (the URL segment; metrics labels).
    pub id: String,
    /// The WeChat appid.
    pub appid: String,
    /// The AppSecret.
    pub secret: Secret,
    /// Log and record API calls, never make them.
    pub dry_run: bool,
}

impl WechatClient {
    /// A client for `apps`, talking to `api_base` (`https://api.weixin.qq.com`, or a mock).
    pub fn new<A: Into<ClientApp>>(
        api_base: &str,
        apps: impl IntoIterator<Item = A>,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let base = api_base.trim_end_matches('/');
        let bad = |message: String| ClientError::ApiBase {
            api_base: api_base.to_string(),
            message,
        };
        let url = reqwest::Url::parse(base).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("unsupported scheme {:?}", url.scheme())));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment".into()));
        }

        let mut builder = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout)
            // A redirected POST would become a GET; WeChat never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kefu/", env!("CARGO_PKG_VERSION")));
        if crate::net::is_loopback(&url) {
            // A test's mock must not be reached through a proxy from the environment.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(ClientError::Http)?;

        let policy = TokenPolicy {
            refresh_margin: options.token_refresh_margin,
            force_refresh_min_interval: options.force_refresh_min_interval,
        };
        let mut by_id = HashMap::new();
        for app in apps {
            let app: ClientApp = app.into();
            let entry = if app.dry_run {
                App::DryRun
            } else {
                App::Live(Box::new(LiveApp {
                    id: app.id.clone(),
                    appid: app.appid.clone(),
                    secret: app.secret.clone(),
                    token: TokenSlot::new(&app.id, policy.clone(), options.clock.clone()),
                }))
            };
            if by_id.insert(app.id.clone(), entry).is_some() {
                return Err(ClientError::DuplicateApp(app.id.clone()));
            }
        }

        Ok(Self {
            inner: Arc::new(Inner {
                http,
                token_url: format!("{base}/cgi-bin/stable_token"),
                send_url: format!("{base}/cgi-bin/message/custom/send"),
                upload_url: format!("{base}/cgi-bin/media/upload"),
                apps: by_id,
                dry_runs: DryRunLog::new(options.dry_run_capacity),
                on_token_fetch: options.on_token_fetch.clone(),
                token_share: options.token_share.clone(),
                token_margin: options.token_refresh_margin,
            }),
        })
    }

    /// Whether the app sends for real (`Some(false)`) or in dry-run (`Some(true)`); `None` for an
    /// app the client does not know.
    pub fn is_dry_run(&self, app_id: &str) -> Option<bool> {
        self.inner
            .apps
            .get(app_id)
            .map(|app| matches!(app, App::DryRun))
    }

    /// The last sends of dry-run apps (at most `dry_run_capacity`), oldest first.
    pub fn dry_run_sends(&self) -> Vec<DryRunSend> {
        self.inner.dry_runs.snapshot()
    }

    /// Sends one message to one user of app `app_id` (the kefu id from the config) and
    /// classifies the result. Never panics and never retries with backoff.
    // No fields: its one caller, the outbox worker, is in a span that names the app, the user and
    // the entry.
    #[tracing::instrument(name = "wechat_send", skip_all)]
    pub async fn send(
        &self,
        app_id: &str,
        openid: &OpenId,
        message: &OutboundMessage,
    ) -> SendOutcome {
        let Some(app) = self.inner.apps.get(app_id) else {
            return SendOutcome::Failed {
                errcode: NOT_FROM_WECHAT,
                reason: format!("no app {app_id:?} in the config"),
            };
        };
        let body = match body::send_body(openid, message) {
            Ok(body) => body,
            Err(e) => {
                return SendOutcome::Failed {
                    errcode: NOT_FROM_WECHAT,
                    reason: format!("cannot build the request body: {e}"),
                };
            }
        };
        let msgtype = body::msgtype(message);
        let outcome = match app {
            App::DryRun => {
                tracing::info!(msgtype, body_bytes = body.len(), "dry-run: would send");
                tracing::debug!(%body, "dry-run body");
                self.inner.dry_runs.push(DryRunSend {
                    at: chrono::Utc::now(),
                    app_id: app_id.to_string(),
                    openid: openid.to_string(),
                    msgtype,
                    message: message.clone(),
                    body,
                });
                return SendOutcome::Accepted;
            }
            App::Live(live) => self.send_live(live, body).await,
        };
        match &outcome {
            SendOutcome::Accepted => tracing::debug!(msgtype, "sent"),
            SendOutcome::Retry { reason } => tracing::debug!(msgtype, %reason, "send to retry"),
            SendOutcome::Unknown { reason } => {
                tracing::warn!(msgtype, %reason, "send without an answer: WeChat may have taken it; it will be retried")
            }
            SendOutcome::Failed { errcode, reason } => {
                tracing::debug!(msgtype, errcode, %reason, "send failed")
            }
        }
        outcome
    }

    /// Uploads an image as temporary media (`cgi-bin/media/upload?type=image`, multipart field
    /// `media` with the file name and content type). A refused token is refreshed once, as for a
    /// send. Dry-run apps upload nothing and get a made-up media_id.
    #[tracing::instrument(name = "wechat_upload", skip_all, fields(app = %app_id))]
    pub async fn upload_image(
        &self,
        app_id: &str,
        file_name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Uploaded, SendOutcome> {
        let live = match self.inner.apps.get(app_id) {
            None => {
                return Err(SendOutcome::Failed {
                    errcode: NOT_FROM_WECHAT,
                    reason: format!("no app {app_id:?} in the config"),
                });
            }
            Some(App::DryRun) => {
                tracing::info!(bytes = bytes.len(), "dry-run: would upload an image");
                return Ok(Uploaded {
                    media_id: format!("dry-run-{}", bytes.len()),
                    created_at: None,
                });
            }
            Some(App::Live(live)) => live,
        };
        let (appid, secret, slot) = (live.appid.as_str(), &live.secret, &live.token);
        let mut refused: Option<AccessToken> = None;
        for _ in 0..2 {
            let fetch = |mode| self.fetch_token_counted(&live.id, appid, secret, mode);
            let token = match slot.get(fetch).await {
                Ok(token) => token,
                Err(e) => return Err(e.into_outcome()),
            };
            if refused.as_ref() == Some(&token) {
                break;
            }
            match self
                .post_upload(&token, file_name, content_type, &bytes)
                .await
            {
                Ok(uploaded) => return Ok(uploaded),
                Err(UploadAttempt::Done(outcome)) => return Err(outcome),
                Err(UploadAttempt::TokenRejected(errcode)) => {
                    tracing::info!(errcode, "access token refused on upload; refreshing it");
                    slot.invalidate_if(&token, Invalidate::Refresh);
                    refused = Some(token);
                }
            }
        }
        Err(SendOutcome::Retry {
            reason: "access token refused twice on upload".into(),
        })
    }

    async fn post_upload(
        &self,
        token: &AccessToken,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Uploaded, UploadAttempt> {
        let part = reqwest::multipart::Part::bytes(bytes.to_vec())
            .file_name(file_name.to_string())
            .mime_str(content_type)
            .map_err(|e| {
                UploadAttempt::Done(SendOutcome::Failed {
                    errcode: NOT_FROM_WECHAT,
                    reason: format!("bad content type: {e}"),
                })
            })?;
        let form = reqwest::multipart::Form::new().part("media", part);
        let request = self
            .inner
            .http
            .post(&self.inner.upload_url)
            .query(&[("access_token", token.expose()), ("type", "image")])
            .multipart(form);
        let answer = exchange(request)
            .await
            .map_err(|reason| UploadAttempt::Done(SendOutcome::Retry { reason }))?;
        if let Some(outcome) = status_outcome(answer.status) {
            return Err(UploadAttempt::Done(outcome));
        }
        #[derive(Deserialize)]
        struct UploadReply {
            #[serde(default)]
            errcode: i64,
            #[serde(default)]
            errmsg: String,
            #[serde(default)]
            media_id: Option<String>,
            #[serde(default)]
            created_at: Option<serde_json::Value>,
        }
        let reply: UploadReply = serde_json::from_slice(&answer.body).map_err(|e| {
            UploadAttempt::Done(SendOutcome::Retry {
                reason: format!("unreadable answer to media/upload: {e}"),
            })
        })?;
        match errcode::classify_send(reply.errcode) {
            SendClass::Accepted => match reply.media_id {
                Some(media_id) if !media_id.is_empty() => Ok(Uploaded {
                    media_id,
                    created_at: reply.created_at.and_then(|v| match v {
                        serde_json::Value::Number(n) => n.as_i64(),
                        serde_json::Value::String(s) => s.parse().ok(),
                        _ => None,
                    }),
                }),
                _ => Err(UploadAttempt::Done(SendOutcome::Retry {
                    reason: "media/upload answered without a media_id".into(),
                })),
            },
            SendClass::TokenRejected => Err(UploadAttempt::TokenRejected(reply.errcode)),
            SendClass::Retry => Err(UploadAttempt::Done(SendOutcome::Retry {
                reason: errcode::reason(reply.errcode, &reply.errmsg),
            })),
            SendClass::Failed => Err(UploadAttempt::Done(SendOutcome::Failed {
                errcode: reply.errcode,
                reason: errcode::reason(reply.errcode, &reply.errmsg),
            })),
        }
    }

    async fn send_live(&self, live: &LiveApp, body: String) -> SendOutcome {
        let (appid, secret, slot) = (live.appid.as_str(), &live.secret, &live.token);
        let fetch = |mode| self.fetch_token_shared(&live.id, appid, secret, mode);
        let token = match slot.get(fetch).await {
            Ok(token) => token,
            Err(e) => return e.into_outcome(),
        };
        let (errcode, errmsg) = match self.post_send(&token, &body).await {
            Attempt::Done(outcome) => return outcome,
            Attempt::TokenRejected(errcode, errmsg) => (errcode, errmsg),
        };
        tracing::info!(
            errcode,
            "access token refused; refreshing it and sending once more"
        );
        slot.invalidate_if(&token, Invalidate::Refresh);
        self.expire_shared(&live.id, &token).await;
        let fetch = |mode| self.fetch_token_shared(&live.id, appid, secret, mode);
        let fresh = match slot.get(fetch).await {
            Ok(token) => token,
            Err(e) => return e.into_outcome(),
        };
        if fresh == token {
            // Normal mode handed back the token WeChat had just refused.
            tracing::warn!(errcode, "stable_token returned the refused token again");
        }
        match self.post_send(&fresh, &body).await {
            Attempt::Done(outcome) => outcome,
            Attempt::TokenRejected(again, errmsg2) => {
                if slot.invalidate_if(&fresh, Invalidate::Escalate) {
                    tracing::warn!(
                        errcode = again,
                        "refreshed access token refused too; the next fetch may force_refresh"
                    );
                }
                SendOutcome::Retry {
                    reason: format!(
                        "access token refused twice: {}; then {}",
                        errcode::reason(errcode, &errmsg),
                        errcode::reason(again, &errmsg2)
                    ),
                }
            }
        }
    }

    /// One POST to `custom/send` with `token`, classified.
    async fn post_send(&self, token: &AccessToken, body: &str) -> Attempt {
        let request = self
            .inner
            .http
            .post(&self.inner.send_url)
            .query(&[("access_token", token.expose())])
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )
            .body(body.to_string());
        let answer = match exchange_classified(request).await {
            Ok(answer) => answer,
            // Cut off after the request may have left (a timeout, a reset): WeChat may have
            // taken it, and nothing tells; it is retried all the same, and counted.
            Err(NoAnswer {
                reason,
                maybe_received: true,
            }) => return Attempt::Done(SendOutcome::Unknown { reason }),
            Err(NoAnswer { reason, .. }) => return Attempt::Done(SendOutcome::Retry { reason }),
        };
        if let Some(outcome) = status_outcome(answer.status) {
            return Attempt::Done(outcome);
        }
        let reply: ApiReply = match serde_json::from_slice(&answer.body) {
            Ok(reply) => reply,
            Err(e) => {
                // Unknown whether WeChat took it; a duplicate beats a lost reply.
                return Attempt::Done(SendOutcome::Unknown {
                    reason: format!("unreadable answer to custom/send (HTTP 200): {e}"),
                });
            }
        };
        let outcome = match errcode::classify_send(reply.errcode) {
            SendClass::Accepted => SendOutcome::Accepted,
            SendClass::Retry => SendOutcome::Retry {
                reason: errcode::reason(reply.errcode, &reply.errmsg),
            },
            SendClass::TokenRejected => {
                return Attempt::TokenRejected(reply.errcode, reply.errmsg);
            }
            SendClass::Failed => SendOutcome::Failed {
                errcode: reply.errcode,
                reason: errcode::reason(reply.errcode, &reply.errmsg),
            },
        };
        Attempt::Done(outcome)
    }

    /// The fleet's token when a shared store holds one (see [`super::shared_token`]), else
    /// [`Self::fetch_token_counted`] under the fleet's fetch lock.
    async fn fetch_token_shared(
        &self,
        app_id: &str,
        appid: &str,
        secret: &Secret,
        mode: FetchMode,
    ) -> Result<Fetched, TokenError> {
        use super::shared_token::{LOCK_TTL, POLL, holder};
        let Some(share) = self.inner.token_share.clone() else {
            return self.fetch_token_counted(app_id, appid, secret, mode).await;
        };
        let margin = i64::try_from(self.inner.token_margin.as_millis()).unwrap_or(i64::MAX);
        let deadline = tokio::time::Instant::now() + LOCK_TTL;
        loop {
            if mode == FetchMode::Normal {
                let shared = share.get(app_id).await;
                if let Err(e) = &shared {
                    tracing::warn!(error = %e, "shared token unreachable; fetching alone");
                    return self.fetch_token_counted(app_id, appid, secret, mode).await;
                }
                if let Some(fetched) = fresh(shared, margin) {
                    return Ok(fetched);
                }
            }
            let me = holder();
            let ttl = i64::try_from(LOCK_TTL.as_millis()).unwrap_or(10_000);
            match share.lock(app_id, &me, ttl).await {
                Ok(true) => {
                    // A peer may have shared a token and released the lock between the read
                    // above and this lock: look again before fetching a second one.
                    let fetched = match mode {
                        FetchMode::Normal => fresh(share.get(app_id).await, margin),
                        FetchMode::Force => None,
                    };
                    let fetched = match fetched {
                        Some(shared) => Ok(shared),
                        None => {
                            let fetched =
                                self.fetch_token_counted(app_id, appid, secret, mode).await;
                            if let Ok(f) = &fetched {
                                let ttl =
                                    i64::try_from(f.expires_in.as_millis()).unwrap_or(i64::MAX);
                                if let Err(e) = share.put(app_id, f.token.expose(), ttl).await {
                                    tracing::warn!(error = %e, "cannot share the new token");
                                }
                            }
                            fetched
                        }
                    };
                    if let Err(e) = share.unlock(app_id, &me).await {
                        tracing::warn!(error = %e, "cannot release the token fetch lock; it expires by itself");
                    }
                    return fetched;
                }
                Ok(false) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                Ok(false) => {
                    tracing::warn!("a peer held the token fetch lock for 10 s; fetching alone");
                    return self.fetch_token_counted(app_id, appid, secret, mode).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "shared token unreachable; fetching alone");
                    return self.fetch_token_counted(app_id, appid, secret, mode).await;
                }
            }
        }
    }

    /// Expires the fleet's copy of a refused token, if it is still that one.
    async fn expire_shared(&self, app_id: &str, token: &AccessToken) {
        if let Some(share) = &self.inner.token_share
            && let Err(e) = share.expire_if(app_id, token.expose()).await
        {
            tracing::warn!(error = %e, "cannot expire the shared token");
        }
    }

    /// [`Self::fetch_token`], reported to the fetch hook.
    async fn fetch_token_counted(
        &self,
        app_id: &str,
        appid: &str,
        secret: &Secret,
        mode: FetchMode,
    ) -> Result<Fetched, TokenError> {
        let result = self.fetch_token(appid, secret, mode).await;
        if let Some(hook) = &self.inner.on_token_fetch {
            (hook.0)(app_id, result.is_ok());
        }
        result
    }

    /// One POST to `stable_token`.
    async fn fetch_token(
        &self,
        appid: &str,
        secret: &Secret,
        mode: FetchMode,
    ) -> Result<Fetched, TokenError> {
        let request = self
            .inner
            .http
            .post(&self.inner.token_url)
            .json(&serde_json::json!({
                "grant_type": "client_credential",
                "appid": appid,
                "secret": secret.expose(),
                "force_refresh": mode == FetchMode::Force,
            }));
        let answer = exchange(request).await.map_err(TokenError::Transient)?;
        match status_outcome(answer.status) {
            None => {}
            Some(SendOutcome::Failed { errcode, reason }) => {
                return Err(TokenError::Failed { errcode, reason });
            }
            Some(SendOutcome::Retry { reason } | SendOutcome::Unknown { reason }) => {
                return Err(TokenError::Transient(reason));
            }
            Some(SendOutcome::Accepted) => {}
        }
        let reply: TokenReply = serde_json::from_slice(&answer.body).map_err(|e| {
            TokenError::Transient(format!("unreadable answer to stable_token: {e}"))
        })?;
        if reply.errcode != 0 {
            let reason = errcode::reason(reply.errcode, &reply.errmsg);
            let error = match errcode::classify_token_fetch(reply.errcode) {
                TokenClass::Retry => TokenError::Transient(reason),
                TokenClass::Config => {
                    tracing::error!(
                        errcode = reply.errcode,
                        %reason,
                        "stable_token refused the app's credentials"
                    );
                    TokenError::Config {
                        errcode: reply.errcode,
                        reason,
                    }
                }
                TokenClass::Failed => TokenError::Failed {
                    errcode: reply.errcode,
                    reason,
                },
            };
            return Err(error);
        }
        match reply.access_token {
            Some(token) if !token.is_empty() => Ok(Fetched {
                token: AccessToken::new(&token),
                // WeChat always sends it (7200); if not, assume the shortest it ever is.
                expires_in: Duration::from_secs(reply.expires_in.unwrap_or(300)),
            }),
            _ => Err(TokenError::Transient(
                "stable_token answered without an access_token".into(),
            )),
        }
    }
}

impl Deliver for WechatClient {
    fn deliver<'a>(
        &'a self,
        app_id: &'a str,
        openid: &'a OpenId,
        message: &'a OutboundMessage,
    ) -> BoxFuture<'a, SendOutcome> {
        Box::pin(self.send(app_id, openid, message))
    }
}

/// Sends a request and reads at most [`MAX_RESPONSE_BYTES`] of the answer. The error is a
/// reason without the URL (it holds the token).
async fn exchange(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    exchange_classified(request).await.map_err(|e| e.reason)
}

/// Why an exchange got no answer, and whether the request may have reached the server.
struct NoAnswer {
    reason: String,
    /// False only when no connection was made: the server cannot have seen the request.
    maybe_received: bool,
}

async fn exchange_classified(request: reqwest::RequestBuilder) -> Result<Answer, NoAnswer> {
    let no_answer = |e: reqwest::Error| NoAnswer {
        maybe_received: !e.is_connect(),
        reason: describe(e),
    };
    let mut response = request.send().await.map_err(no_answer)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(no_answer)? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() >= room {
            break;
        }
    }
    Ok(Answer { status, body })
}

/// The fleet's shared token as read, when it has more than the refresh margin (and a second)
/// left.
fn fresh(shared: Result<Option<(String, i64)>, String>, margin_ms: i64) -> Option<Fetched> {
    match shared {
        Ok(Some((token, left_ms))) if left_ms > margin_ms.saturating_add(1000) => Some(Fetched {
            token: AccessToken::new(&token),
            expires_in: Duration::from_millis(left_ms.unsigned_abs()),
        }),
        _ => None,
    }
}

/// The outcome an HTTP status decides by itself; `None` for 2xx, whose body decides.
/// 5xx, 408 and 429 are worth retrying; other statuses (3xx, 4xx) mean a wrong `api_base` or a
/// proxy in the way, which retrying will not fix.
fn status_outcome(status: StatusCode) -> Option<SendOutcome> {
    if status.is_success() {
        None
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Some(SendOutcome::Retry {
            reason: format!("HTTP {status}"),
        })
    } else {
        Some(SendOutcome::Failed {
            errcode: NOT_FROM_WECHAT,
            reason: format!("HTTP {status}"),
        })
    }
}

/// A reqwest error as a reason: what happened and why, never the URL.
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", error_chain(&error.without_url()))
}

/// An error and its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(status_outcome(StatusCode::OK), None);
        for code in [500, 502, 503, 504, 408, 429] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(status_outcome(status), Some(SendOutcome::Retry { .. })),
                "{code}"
            );
        }
        for code in [301, 400, 401, 403, 404] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    status_outcome(status),
                    Some(SendOutcome::Failed {
                        errcode: NOT_FROM_WECHAT,
                        ..
                    })
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn bad_api_base_is_refused() {
        for base in ["not a url", "ftp://x", "http://x/?a=b"] {
            assert!(
                matches!(
                    WechatClient::new(base, Vec::<ClientApp>::new(), ClientOptions::default()),
                    Err(ClientError::ApiBase { .. })
                ),
                "{base}"
            );
        }
        assert!(
            WechatClient::new(
                "https://api.weixin.qq.com/",
                Vec::<ClientApp>::new(),
                ClientOptions::default()
            )
            .is_ok()
        );
    }

    /// A fleet share where a peer shares its token and releases the lock just before this
    /// instance takes it: the first read finds nothing, the lock is free.
    #[derive(Default)]
    struct PeerFinishesFirst {
        token: std::sync::Mutex<Option<(String, i64)>>,
        puts: std::sync::atomic::AtomicUsize,
    }

    impl super::super::TokenShare for PeerFinishesFirst {
        fn get(&self, _: &str) -> BoxFuture<'_, Result<Option<(String, i64)>, String>> {
            let token = self.token.lock().map(|t| t.clone()).unwrap_or_default();
            Box::pin(async move { Ok(token) })
        }
        fn put(&self, _: &str, _: &str, _: i64) -> BoxFuture<'_, Result<(), String>> {
            self.puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async { Ok(()) })
        }
        fn lock(&self, _: &str, _: &str, _: i64) -> BoxFuture<'_, Result<bool, String>> {
            if let Ok(mut token) = self.token.lock() {
                *token = Some(("peer-token".into(), 7_200_000));
            }
            Box::pin(async { Ok(true) })
        }
        fn unlock(&self, _: &str, _: &str) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
        fn expire_if(&self, _: &str, _: &str) -> BoxFuture<'_, Result<bool, String>> {
            Box::pin(async { Ok(false) })
        }
    }

    #[tokio::test]
    async fn a_token_shared_while_taking_the_lock_is_used_not_fetched_again() {
        let share = Arc::new(PeerFinishesFirst::default());
        let options = ClientOptions {
            token_share: Some(share.clone()),
            ..ClientOptions::default()
        };
        // Nothing listens on port 1: a fetch would fail.
        let client =
            WechatClient::new("http://127.0.0.1:1", Vec::<ClientApp>::new(), options).unwrap();
        let secret = crate::secret::Secret::new("s");
        let fetched = client
            .fetch_token_shared("app", "wx1", &secret, FetchMode::Normal)
            .await
            .unwrap();
        assert_eq!(fetched.token.expose(), "peer-token");
        assert_eq!(share.puts.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn loopback_detection() {
        for (base, expected) in [
            ("http://127.0.0.1:1", true),
            ("http://localhost:1", true),
            ("http://[::1]:1", true),
            ("https://api.weixin.qq.com", false),
        ] {
            assert_eq!(
                crate::net::is_loopback(&reqwest::Url::parse(base).unwrap()),
                expected,
                "{base}"
            );
        }
    }
}
