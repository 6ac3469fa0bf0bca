//! Pushes in XML or JSON parsed into one domain type, [`InboundMessage`].
//!
//! The format is detected from the body's first non-blank byte (`<` or `{`), never from the
//! Content-Type. XML with a DOCTYPE is refused (XXE). `MsgId` is a 64-bit number or, in the
//! cloud-function variant, a string.
//!
//! Owns the push model and both directions of it: [`parse_envelope`] (the outer layer of an
//! encrypted push), [`parse_message`] (a plaintext or decrypted push, on the hot path: streamed,
//! no DOM, text borrowed until the end) and the renderers `kefu send` and the tests use. Knows
//! nothing of signatures or keys.

use std::borrow::Cow;
use std::fmt;

use super::json::{self, JsonInt, JsonMsgId, JsonText};
use super::xml::{self, Slot};

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

/// What every body goes through first: a known format, then UTF-8.
pub(super) fn prepare(body: &[u8]) -> Result<(Format, &str), ParseError> {
    let format = detect_format(body).ok_or(ParseError::UnknownFormat)?;
    let text = std::str::from_utf8(body).map_err(|_| ParseError::NotUtf8)?;
    Ok((format, text))
}

pub(super) fn json_error(e: serde_json::Error) -> ParseError {
    ParseError::Malformed(Format::Json, e.to_string())
}

/// Parses the envelope of an encrypted push: `Encrypt` and `ToUserName`, whether the body is a
/// safe-mode envelope or a compatible-mode body that also carries the plaintext fields (which
/// are unauthenticated and ignored here).
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, ParseError> {
    let (format, text) = prepare(body)?;
    let (to_user_name, encrypt) = match format {
        Format::Xml => {
            let mut slots = [None, None];
            xml::scan(
                text,
                |name| match name {
                    b"ToUserName" => Some(0),
                    b"Encrypt" => Some(1),
                    _ => None,
                },
                &mut slots,
            )?;
            let [to_user_name, encrypt] = slots;
            (
                to_user_name.map(Cow::into_owned),
                encrypt.map(Cow::into_owned),
            )
        }
        Format::Json => {
            #[derive(serde::Deserialize)]
            struct JsonEnvelope {
                #[serde(rename = "ToUserName")]
                to_user_name: Option<String>,
                #[serde(rename = "Encrypt")]
                encrypt: Option<String>,
            }
            let env: JsonEnvelope = serde_json::from_str(text).map_err(json_error)?;
            (env.to_user_name, env.encrypt)
        }
    };
    Ok(Envelope {
        format,
        to_user_name,
        encrypt,
    })
}

/// Parses a plaintext push (or a decrypted payload) in either format.
///
/// Required: `ToUserName`, `FromUserName`, `MsgType` (present and non-empty). `CreateTime`
/// defaults to 0, a text without `Content` has an empty one, and unknown elements are ignored.
pub fn parse_message(body: &[u8]) -> Result<(Format, InboundMessage), ParseError> {
    let (format, text) = prepare(body)?;
    let raw = match format {
        Format::Xml => RawPush::from_xml(text)?,
        Format::Json => RawPush::from_json(text)?,
    };
    Ok((format, raw.into_message()?))
}

/// The fields of a push as read, before the required ones are checked and the kind is chosen.
/// XML text stays borrowed from the body until then.
struct RawPush<'a> {
    to_user_name: Slot<'a>,
    from_user_name: Slot<'a>,
    create_time: Option<i64>,
    msg_type: Slot<'a>,
    msg_id: Option<MsgId>,
    content: Slot<'a>,
    pic_url: Slot<'a>,
    media_id: Slot<'a>,
    title: Slot<'a>,
    app_id: Slot<'a>,
    page_path: Slot<'a>,
    thumb_url: Slot<'a>,
    thumb_media_id: Slot<'a>,
    event: Slot<'a>,
    session_from: Slot<'a>,
    event_key: Slot<'a>,
}

impl<'a> RawPush<'a> {
    fn from_xml(text: &'a str) -> Result<Self, ParseError> {
        let mut slots: [Slot<'a>; 16] = Default::default();
        xml::scan(
            text,
            |name| {
                Some(match name {
                    b"ToUserName" => 0,
                    b"FromUserName" => 1,
                    b"CreateTime" => 2,
                    b"MsgType" => 3,
                    b"MsgId" => 4,
                    b"Content" => 5,
                    b"PicUrl" => 6,
                    b"MediaId" => 7,
                    b"Title" => 8,
                    b"AppId" => 9,
                    b"PagePath" => 10,
                    b"ThumbUrl" => 11,
                    b"ThumbMediaId" => 12,
                    b"Event" => 13,
                    b"SessionFrom" => 14,
                    b"EventKey" => 15,
                    _ => return None,
                })
            },
            &mut slots,
        )?;
        let [
            to_user_name,
            from_user_name,
            create_time,
            msg_type,
            msg_id,
            content,
            pic_url,
            media_id,
            title,
            app_id,
            page_path,
            thumb_url,
            thumb_media_id,
            event,
            session_from,
            event_key,
        ] = slots;
        let create_time = xml::parse_int(create_time.as_deref(), "CreateTime")?;
        let msg_id = match msg_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) => Some(
                t.parse()
                    .map_or_else(|_| MsgId::Text(t.to_owned()), MsgId::Number),
            ),
        };
        Ok(RawPush {
            to_user_name,
            from_user_name,
            create_time,
            msg_type,
            msg_id,
            content,
            pic_url,
            media_id,
            title,
            app_id,
            page_path,
            thumb_url,
            thumb_media_id,
            event,
            session_from,
            event_key,
        })
    }

    fn from_json(text: &str) -> Result<Self, ParseError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct JsonPush {
            to_user_name: Option<String>,
            from_user_name: Option<String>,
            create_time: Option<JsonInt>,
            msg_type: Option<String>,
            msg_id: Option<JsonMsgId>,
            content: Option<String>,
            pic_url: Option<String>,
            media_id: Option<String>,
            title: Option<String>,
            app_id: Option<String>,
            page_path: Option<String>,
            thumb_url: Option<String>,
            thumb_media_id: Option<String>,
            event: Option<String>,
            session_from: Option<JsonText>,
            event_key: Option<JsonText>,
        }
        let p: JsonPush = serde_json::from_str(text).map_err(json_error)?;
        let own = |s: Option<String>| s.map(Cow::Owned);
        Ok(RawPush {
            to_user_name: own(p.to_user_name),
            from_user_name: own(p.from_user_name),
            create_time: p.create_time.map(|t| t.0),
            msg_type: own(p.msg_type),
            msg_id: p
                .msg_id
                .map(|id| id.0)
                .filter(|id| !matches!(id, MsgId::Text(t) if t.is_empty())),
            content: own(p.content),
            pic_url: own(p.pic_url),
            media_id: own(p.media_id),
            title: own(p.title),
            app_id: own(p.app_id),
            page_path: own(p.page_path),
            thumb_url: own(p.thumb_url),
            thumb_media_id: own(p.thumb_media_id),
            event: own(p.event),
            session_from: own(p.session_from.map(|t| t.0)),
            event_key: own(p.event_key.map(|t| t.0)),
        })
    }

    fn into_message(self) -> Result<InboundMessage, ParseError> {
        let to_user_name = required(self.to_user_name, "ToUserName")?;
        let from_user_name = required(self.from_user_name, "FromUserName")?;
        let msg_type = required(self.msg_type, "MsgType")?;
        let text = |slot: Slot<'a>| slot.map(Cow::into_owned).unwrap_or_default();
        let kind = match msg_type.as_str() {
            "text" => MsgKind::Text {
                content: text(self.content),
            },
            "image" => MsgKind::Image {
                pic_url: text(self.pic_url),
                media_id: text(self.media_id),
            },
            "miniprogrampage" => MsgKind::MiniProgramPage {
                title: text(self.title),
                app_id: text(self.app_id),
                page_path: text(self.page_path),
                thumb_url: text(self.thumb_url),
                thumb_media_id: text(self.thumb_media_id),
            },
            "event" => MsgKind::Event {
                event: text(self.event),
                session_from: self.session_from.map(Cow::into_owned),
                event_key: self.event_key.map(Cow::into_owned),
            },
            _ => MsgKind::Other { msg_type },
        };
        Ok(InboundMessage {
            to_user_name,
            from_user_name,
            create_time: self.create_time.unwrap_or(0),
            msg_id: self.msg_id,
            kind,
        })
    }
}

/// A required field: present and non-empty.
fn required(slot: Slot<'_>, name: &'static str) -> Result<String, ParseError> {
    match slot {
        Some(value) if !value.is_empty() => Ok(value.into_owned()),
        _ => Err(ParseError::MissingField(name)),
    }
}

/// Renders a push as WeChat would send it (for `kefu send` and tests).
pub fn render_push(format: Format, msg: &InboundMessage) -> String {
    render(format, msg, None)
}

/// Renders a compatible-mode push: the plaintext fields and `Encrypt` side by side (doc §2.2,
/// V5).
pub fn render_compatible(format: Format, msg: &InboundMessage, encrypt: &str) -> String {
    render(format, msg, Some(encrypt))
}

/// Renders a safe-mode push: `ToUserName` and `Encrypt` only (doc §2.4).
pub fn render_envelope(format: Format, to_user_name: &str, encrypt: &str) -> String {
    let mut out = String::with_capacity(64 + to_user_name.len() + encrypt.len());
    match format {
        Format::Xml => {
            out.push_str("<xml>");
            xml::push_cdata_element(&mut out, "ToUserName", to_user_name);
            xml::push_cdata_element(&mut out, "Encrypt", encrypt);
            out.push_str("</xml>");
        }
        Format::Json => {
            out.push('{');
            json::push_str_member(&mut out, "ToUserName", to_user_name);
            json::push_str_member(&mut out, "Encrypt", encrypt);
            out.push('}');
        }
    }
    out
}

fn render(format: Format, msg: &InboundMessage, encrypt: Option<&str>) -> String {
    // Field names and values in the order the doc's samples show them.
    let mut strings: Vec<(&str, &str)> = Vec::with_capacity(6);
    match &msg.kind {
        MsgKind::Text { content } => strings.push(("Content", content)),
        MsgKind::Image { pic_url, media_id } => {
            strings.extend([("PicUrl", pic_url.as_str()), ("MediaId", media_id)]);
        }
        MsgKind::MiniProgramPage {
            title,
            app_id,
            page_path,
            thumb_url,
            thumb_media_id,
        } => strings.extend([
            ("Title", title.as_str()),
            ("AppId", app_id),
            ("PagePath", page_path),
            ("ThumbUrl", thumb_url),
            ("ThumbMediaId", thumb_media_id),
        ]),
        MsgKind::Event {
            event,
            session_from,
            event_key,
        } => {
            strings.push(("Event", event));
            if let Some(s) = session_from {
                strings.push(("SessionFrom", s));
            }
            if let Some(k) = event_key {
                strings.push(("EventKey", k));
            }
        }
        MsgKind::Other { .. } => {}
    }
    let size: usize = strings
        .iter()
        .map(|(n, v)| n.len() * 2 + v.len() + 32)
        .sum();
    let mut out = String::with_capacity(
        256 + msg.to_user_name.len()
            + msg.from_user_name.len()
            + size
            + encrypt.map_or(0, |e| e.len() + 40),
    );
    match format {
        Format::Xml => {
            out.push_str("<xml>");
            xml::push_cdata_element(&mut out, "ToUserName", &msg.to_user_name);
            xml::push_cdata_element(&mut out, "FromUserName", &msg.from_user_name);
            xml::push_number_element(&mut out, "CreateTime", msg.create_time);
            xml::push_cdata_element(&mut out, "MsgType", msg.kind.type_name());
            for (name, value) in strings {
                xml::push_cdata_element(&mut out, name, value);
            }
            match &msg.msg_id {
                Some(MsgId::Number(n)) => xml::push_number_element(&mut out, "MsgId", n),
                Some(MsgId::Text(t)) => xml::push_cdata_element(&mut out, "MsgId", t),
                None => {}
            }
            if let Some(e) = encrypt {
                xml::push_cdata_element(&mut out, "Encrypt", e);
            }
            out.push_str("</xml>");
        }
        Format::Json => {
            out.push('{');
            json::push_str_member(&mut out, "ToUserName", &msg.to_user_name);
            json::push_str_member(&mut out, "FromUserName", &msg.from_user_name);
            json::push_number_member(&mut out, "CreateTime", msg.create_time);
            json::push_str_member(&mut out, "MsgType", msg.kind.type_name());
            for (name, value) in strings {
                json::push_str_member(&mut out, name, value);
            }
            match &msg.msg_id {
                Some(MsgId::Number(n)) => json::push_number_member(&mut out, "MsgId", n),
                Some(MsgId::Text(t)) => json::push_str_member(&mut out, "MsgId", t),
                None => {}
            }
            if let Some(e) = encrypt {
                json::push_str_member(&mut out, "Encrypt", e);
            }
            out.push('}');
        }
    }
    out
}
