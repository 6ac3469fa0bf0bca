//! Pushes in XML or JSON parsed into one domain type, [`InboundMessage`].
//!
//! The format is detected from the body's first non-blank byte (`<` or `{`), never from the
//! Content-Type. XML with a DOCTYPE is refused (XXE). `MsgId` is a 64-bit number or, in the
//! cloud-function variant, a string.

use std::fmt;

/// The two body formats WeChat can be configured to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Xml,
}

/// WeChat's message id: a u64 (beyond 2^53, so never a float) or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MsgId {
    Number(u64),
    Text(String),
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgId::Number(n) => write!(f, "{n}"),
            MsgId::Text(s) => f.write_str(s),
        }
    }
}

/// A verified, parsed push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The app's original id (`gh_…`); becomes FromUserName of a passive reply.
    pub to_user_name: String,
    /// The sender's openid: the authoritative sender (the query's `openid` is unsigned).
    pub from_user_name: String,
    /// Seconds since the epoch, as WeChat stamped it; part of the dedupe key of events.
    pub create_time: i64,
    /// Present on messages, absent on events.
    pub msg_id: Option<MsgId>,
    pub kind: MsgKind,
}

/// What the user sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgKind {
    Text {
        content: String,
    },
    Image {
        pic_url: String,
        media_id: String,
    },
    MiniProgramPage {
        title: String,
        app_id: String,
        page_path: String,
        thumb_url: String,
        thumb_media_id: String,
    },
    /// `user_enter_tempsession`, `subscribe`, and any other event, by its `Event` name.
    Event {
        event: String,
        session_from: Option<String>,
        event_key: Option<String>,
    },
    /// Any other `MsgType` (voice, video, location, …): answered `success`, matched only by
    /// rules that name its type.
    Other {
        msg_type: String,
    },
}

impl MsgKind {
    /// The push's `MsgType` as WeChat names it.
    pub fn type_name(&self) -> &str {
        match self {
            MsgKind::Text { .. } => "text",
            MsgKind::Image { .. } => "image",
            MsgKind::MiniProgramPage { .. } => "miniprogrampage",
            MsgKind::Event { .. } => "event",
            MsgKind::Other { msg_type } => msg_type,
        }
    }
}

/// Why a body was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("body is neither JSON nor XML")]
    UnknownFormat,
    #[error("XML with a DOCTYPE is refused")]
    Doctype,
    #[error("malformed {0:?} body: {1}")]
    Malformed(Format, String),
    #[error("missing field {0}")]
    MissingField(&'static str),
}

/// The outer layer of an encrypted push: `Encrypt` (+ `ToUserName`), whatever else is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub format: Format,
    pub to_user_name: Option<String>,
    pub encrypt: Option<String>,
}

/// Detects the format from the first non-blank byte.
pub fn detect_format(body: &[u8]) -> Option<Format> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => Some(Format::Xml),
        Some(b'{') => Some(Format::Json),
        _ => None,
    }
}

/// STUB: parses the envelope of an encrypted push.
pub fn parse_envelope(_body: &[u8]) -> Result<Envelope, ParseError> {
    Err(ParseError::UnknownFormat)
}

/// STUB: parses a plaintext push (or a decrypted payload).
pub fn parse_message(_body: &[u8]) -> Result<(Format, InboundMessage), ParseError> {
    Err(ParseError::UnknownFormat)
}

/// STUB: renders a push as WeChat would send it (for `kefu send` and tests).
pub fn render_push(_format: Format, _msg: &InboundMessage) -> String {
    String::new()
}

/// STUB: the safe-mode body: `ToUserName` + `Encrypt`.
pub fn render_envelope(_format: Format, _to_user_name: &str, _encrypt: &str) -> String {
    String::new()
}

/// STUB: the compatible-mode body: the plaintext fields plus `Encrypt`.
pub fn render_compatible(_format: Format, _msg: &InboundMessage, _encrypt: &str) -> String {
    String::new()
}
