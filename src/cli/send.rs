//! `kefu send`: acts as the WeChat server. Builds a push for MESSAGE (or an event) in the app's
//! configured format and mode, signs it, encrypts it when the mode asks, POSTs it to the running
//! daemon and prints the reply body, decrypted when it is encrypted.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use rand::Rng;

use super::load_settings;
use crate::config::{AppConfig, Mode, Settings};
use crate::protocol::message::{render_compatible, render_envelope, render_push};
use crate::protocol::{InboundMessage, MsgId, MsgKind, crypto, reply, signature};

/// The original id `kefu send` writes as ToUserName (WeChat would put the app's `gh_…` id).
const SEND_ORIGINAL_ID: &str = "gh_kefu_send";

/// A push ready to POST: query string and body.
#[derive(Debug, Clone)]
pub struct BuiltPush {
    pub query: String,
    pub body: String,
    pub content_type: &'static str,
}

/// Builds the push WeChat would send for `msg` to `app`, at `timestamp` with `nonce`.
pub fn build_push(
    app: &AppConfig,
    msg: &InboundMessage,
    timestamp: i64,
    nonce: &str,
) -> anyhow::Result<BuiltPush> {
    let ts = timestamp.to_string();
    let token = app.token.expose();
    let sig = signature::sign(&[token, &ts, nonce]);
    let plain = render_push(app.format, msg);
    let content_type = match app.format {
        crate::protocol::Format::Json => "application/json",
        crate::protocol::Format::Xml => "text/xml",
    };
    let mut query = format!(
        "signature={sig}&timestamp={ts}&nonce={nonce}&openid={}",
        msg.from_user_name
    );
    let body = match app.mode {
        Mode::Plaintext => plain,
        Mode::Compatible | Mode::Safe => {
            let key = app
                .aes_keys
                .first()
                .ok_or_else(|| anyhow!("app {} has no encoding_aes_key", app.id))?;
            let random: [u8; 16] = rand::random();
            let encrypt = crypto::encrypt(key, plain.as_bytes(), &app.appid, &random);
            let msg_sig = signature::sign(&[token, &ts, nonce, &encrypt]);
            query.push_str(&format!("&encrypt_type=aes&msg_signature={msg_sig}"));
            if app.mode == Mode::Safe {
                render_envelope(app.format, &msg.to_user_name, &encrypt)
            } else {
                render_compatible(app.format, msg, &encrypt)
            }
        }
    };
    Ok(BuiltPush {
        query,
        body,
        content_type,
    })
}

/// The message `kefu send` pushes.
pub fn message_for(
    user: &str,
    event: Option<&str>,
    text: Option<&str>,
    now: i64,
) -> anyhow::Result<InboundMessage> {
    let kind = match (event, text) {
        (Some(event), _) => MsgKind::Event {
            event: event.to_string(),
            session_from: Some("kefu-send".into()),
            event_key: None,
            kf_account: None,
        },
        (None, Some(text)) => MsgKind::Text {
            content: text.to_string(),
        },
        (None, None) => bail!("give a MESSAGE to send, or --event"),
    };
    let msg_id = match kind {
        MsgKind::Event { .. } => None,
        _ => Some(MsgId::Number(
            rand::rng().random_range(1u64 << 60..u64::MAX),
        )),
    };
    Ok(InboundMessage {
        to_user_name: SEND_ORIGINAL_ID.into(),
        from_user_name: user.into(),
        create_time: now,
        msg_id,
        kind,
    })
}

/// Decrypts an encrypted reply for display; plain bodies come back unchanged.
pub fn open_reply(app: &AppConfig, body: &str) -> anyhow::Result<String> {
    let Ok(sealed) = reply::parse_encrypted(body.as_bytes()) else {
        return Ok(body.to_string());
    };
    let ts = sealed.timestamp.to_string();
    if !signature::verify(
        &sealed.msg_signature,
        &[app.token.expose(), &ts, &sealed.nonce, &sealed.encrypt],
    ) {
        bail!("the reply's MsgSignature does not match");
    }
    let (_, plain) = crypto::decrypt_with_any(&app.aes_keys, &sealed.encrypt, &app.appid)
        .map_err(|e| anyhow!("cannot decrypt the reply: {e}"))?;
    String::from_utf8(plain).context("decrypted reply is not UTF-8")
}

fn default_url(settings: &Settings, app: &AppConfig) -> String {
    let listen = settings
        .listen
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    format!("http://{listen}/wechat/{}", app.id)
}

/// `kefu send`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub daemon: super::DaemonConfig,
    /// The app to send as (default: the first configured app).
    #[arg(long)]
    pub app: Option<String>,
    /// The daemon's push URL (default: from the config's listen address).
    #[arg(long)]
    pub url: Option<String>,
    /// The user's openid.
    #[arg(long, default_value = "o_kefu_send_user")]
    pub user: String,
    /// Send this event instead of a text message (e.g. user_enter_tempsession).
    #[arg(long)]
    pub event: Option<String>,
    /// The message's text (left out with --event).
    pub message: Option<String>,
}

pub fn run(args: &SendArgs) -> anyhow::Result<ExitCode> {
    let config = args.daemon.config.as_path();
    let (app, url, user) = (args.app.as_deref(), args.url.as_deref(), args.user.as_str());
    let (event, message) = (args.event.as_deref(), args.message.as_deref());
    let settings = load_settings(config)?;
    let app = match app {
        Some(id) => settings
            .app(id)
            .ok_or_else(|| anyhow!("no app {id:?} in {}", config.display()))?,
        None => settings
            .apps
            .first()
            .ok_or_else(|| anyhow!("no app in {}", config.display()))?,
    };
    let now = chrono::Utc::now().timestamp();
    let msg = message_for(user, event, message, now)?;
    let nonce = rand::rng()
        .random_range(100_000_000u32..u32::MAX)
        .to_string();
    let push = build_push(app, &msg, now, &nonce)?;
    let url = url
        .map(str::to_string)
        .unwrap_or_else(|| default_url(&settings, app));
    let full = if url.contains('?') {
        format!("{url}&{}", push.query)
    } else {
        format!("{url}?{}", push.query)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let response = client
            .post(&full)
            .header("Content-Type", push.content_type)
            .body(push.body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::Ok((status, body))
    })?;
    if !status.is_success() {
        eprintln!("kefu send: HTTP {status}");
        println!("{body}");
        return Ok(ExitCode::from(1));
    }
    let shown = open_reply(app, &body)?;
    println!("{shown}");
    if shown == crate::protocol::reply::SUCCESS
        && app.kind == crate::config::AppKind::Miniprogram
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        eprintln!(
            "(a Mini Program answers a push with `success`; its replies go out through the send \
             API: see the daemon's log, or the console's dry-run sends)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
