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

use super::emit::Emitter;
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
    pub from_user_name: crate::openid::OpenId,
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
    /// An Official Account's voice message; `recognition` is WeChat's speech recognition of it
    /// (when the account turned it on), matched by text rules as if typed.
    Voice {
        media_id: String,
        format: String,
        recognition: Option<String>,
    },
    /// `user_enter_tempsession`, `subscribe`, and any other event, by its `Event` name.
    Event {
        event: String,
        session_from: Option<String>,
        event_key: Option<String>,
        /// The agent account of `kf_create_session`, `kf_close_session`, `kf_switch_session`.
        kf_account: Option<String>,
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
            MsgKind::Other { msg_type } => msg_type,
            known => known.known_type_name(),
        }
    }

    /// The name of a type kefu knows (`other` for the rest, which [`Self::type_name`] names).
    fn known_type_name(&self) -> &'static str {
        match self {
            MsgKind::Text { .. } => "text",
            MsgKind::Image { .. } => "image",
            MsgKind::MiniProgramPage { .. } => "miniprogrampage",
            MsgKind::Voice { .. } => "voice",
            MsgKind::Event { .. } => "event",
            MsgKind::Other { .. } => "other",
        }
    }

    /// [`Self::type_name`] for the conversation log: borrowed for every type kefu knows, owned
    /// only for one it does not.
    pub fn type_name_for_log(&self) -> std::borrow::Cow<'static, str> {
        match self {
            MsgKind::Other { msg_type } => msg_type.clone().into(),
            known => known.known_type_name().into(),
        }
    }

    /// The message type as a bounded label (metrics); see [`msg_type_label`].
    pub fn label(&self) -> &'static str {
        msg_type_label(self.type_name())
    }
}

/// A `MsgType` as a bounded label (metrics): WeChat's documented types by name, anything else
/// `other`, so that a signed push cannot invent label values.
pub fn msg_type_label(msg_type: &str) -> &'static str {
    const KNOWN: [&str; 11] = [
        "text",
        "image",
        "miniprogrampage",
        "event",
        "voice",
        "video",
        "shortvideo",
        "location",
        "link",
        "file",
        "transfer_customer_service",
    ];
    KNOWN
        .iter()
        .find(|k| **k == msg_type)
        .copied()
        .unwrap_or("other")
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
    kf_account: Slot<'a>,
    recognition: Slot<'a>,
    format: Slot<'a>,
}

impl<'a> RawPush<'a> {
    fn from_xml(text: &'a str) -> Result<Self, ParseError> {
        let mut slots: [Slot<'a>; 19] = Default::default();
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
                    b"KfAccount" => 16,
                    b"Recognition" => 17,
                    b"Format" => 18,
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
            kf_account,
            recognition,
            format,
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
            kf_account,
            recognition,
            format,
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
            kf_account: Option<String>,
            recognition: Option<String>,
            format: Option<String>,
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
            kf_account: own(p.kf_account),
            recognition: own(p.recognition),
            format: own(p.format),
        })
    }

    fn into_message(self) -> Result<InboundMessage, ParseError> {
        let to_user_name = required(self.to_user_name, "ToUserName")?.into_owned();
        let from_user_name = required(self.from_user_name, "FromUserName")?.into_owned();
        // Stays borrowed: only an unknown type is kept as text.
        let msg_type = required(self.msg_type, "MsgType")?;
        let text = |slot: Slot<'a>| slot.map(Cow::into_owned).unwrap_or_default();
        let kind = match msg_type.as_ref() {
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
            "voice" => MsgKind::Voice {
                media_id: text(self.media_id),
                format: text(self.format),
                recognition: self.recognition.map(Cow::into_owned),
            },
            "event" => MsgKind::Event {
                event: text(self.event),
                session_from: self.session_from.map(Cow::into_owned),
                event_key: self.event_key.map(Cow::into_owned),
                kf_account: self.kf_account.map(Cow::into_owned),
            },
            _ => MsgKind::Other {
                msg_type: msg_type.into_owned(),
            },
        };
        Ok(InboundMessage {
            to_user_name,
            from_user_name: from_user_name.into(),
            create_time: self.create_time.unwrap_or(0),
            msg_id: self.msg_id,
            kind,
        })
    }
}

/// A required field: present and non-empty.
fn required<'a>(slot: Slot<'a>, name: &'static str) -> Result<Cow<'a, str>, ParseError> {
    match slot {
        Some(value) if !value.is_empty() => Ok(value),
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
        MsgKind::Voice {
            media_id,
            format,
            recognition,
        } => {
            strings.extend([("MediaId", media_id.as_str()), ("Format", format)]);
            if let Some(r) = recognition {
                strings.push(("Recognition", r));
            }
        }
        MsgKind::Event {
            event,
            session_from,
            event_key,
            kf_account,
        } => {
            strings.push(("Event", event));
            if let Some(s) = session_from {
                strings.push(("SessionFrom", s));
            }
            if let Some(k) = event_key {
                strings.push(("EventKey", k));
            }
            if let Some(k) = kf_account {
                strings.push(("KfAccount", k));
            }
        }
        MsgKind::Other { .. } => {}
    }
    let size: usize = strings
        .iter()
        .map(|(n, v)| n.len() * 2 + v.len() + 32)
        .sum();
    let mut e = Emitter::new(
        format,
        256 + msg.to_user_name.len()
            + msg.from_user_name.len()
            + size
            + encrypt.map_or(0, |e| e.len() + 40),
    );
    e.text("ToUserName", &msg.to_user_name)
        .text("FromUserName", &msg.from_user_name)
        .number("CreateTime", msg.create_time)
        .text("MsgType", msg.kind.type_name());
    for (name, value) in strings {
        e.text(name, value);
    }
    match &msg.msg_id {
        Some(MsgId::Number(n)) => e.number("MsgId", n),
        Some(MsgId::Text(t)) => e.text("MsgId", t),
        None => &mut e,
    };
    if let Some(encrypt) = encrypt {
        e.text("Encrypt", encrypt);
    }
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(body: &str) -> (Format, InboundMessage) {
        parse_message(body.as_bytes()).unwrap()
    }

    fn msg(kind: MsgKind, msg_id: Option<MsgId>) -> InboundMessage {
        InboundMessage {
            to_user_name: "toUser".into(),
            from_user_name: "fromUser".into(),
            create_time: 1482048670,
            msg_id,
            kind,
        }
    }

    const ID: Option<MsgId> = Some(MsgId::Number(1234567890123456));

    #[test]
    fn mini_program_samples_in_both_formats() {
        // Doc §2.5, verbatim.
        let text = msg(
            MsgKind::Text {
                content: "this is a test".into(),
            },
            ID,
        );
        let image = msg(
            MsgKind::Image {
                pic_url: "this is a url".into(),
                media_id: "media_id".into(),
            },
            ID,
        );
        let event = msg(
            MsgKind::Event {
                event: "user_enter_tempsession".into(),
                session_from: Some("sessionFrom".into()),
                event_key: None,
                kf_account: None,
            },
            None,
        );
        let cases = [
            (
                "<xml>\n   <ToUserName><![CDATA[toUser]]></ToUserName>\n   <FromUserName><![CDATA[fromUser]]></FromUserName>\n   <CreateTime>1482048670</CreateTime>\n   <MsgType><![CDATA[text]]></MsgType>\n   <Content><![CDATA[this is a test]]></Content>\n   <MsgId>1234567890123456</MsgId>\n</xml>",
                Format::Xml,
                &text,
            ),
            (
                r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"text","Content":"this is a test","MsgId":1234567890123456}"#,
                Format::Json,
                &text,
            ),
            (
                "<xml>\n      <ToUserName><![CDATA[toUser]]></ToUserName>\n      <FromUserName><![CDATA[fromUser]]></FromUserName>\n      <CreateTime>1482048670</CreateTime>\n      <MsgType><![CDATA[image]]></MsgType>\n      <PicUrl><![CDATA[this is a url]]></PicUrl>\n      <MediaId><![CDATA[media_id]]></MediaId>\n      <MsgId>1234567890123456</MsgId>\n</xml>",
                Format::Xml,
                &image,
            ),
            (
                r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"image","PicUrl":"this is a url","MediaId":"media_id","MsgId":1234567890123456}"#,
                Format::Json,
                &image,
            ),
            (
                "<xml>\n    <ToUserName><![CDATA[toUser]]></ToUserName>\n    <FromUserName><![CDATA[fromUser]]></FromUserName>\n    <CreateTime>1482048670</CreateTime>\n    <MsgType><![CDATA[event]]></MsgType>\n    <Event><![CDATA[user_enter_tempsession]]></Event>\n    <SessionFrom><![CDATA[sessionFrom]]></SessionFrom>\n</xml>",
                Format::Xml,
                &event,
            ),
            (
                r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"event","Event":"user_enter_tempsession","SessionFrom":"sessionFrom"}"#,
                Format::Json,
                &event,
            ),
        ];
        for (body, format, expected) in cases {
            assert_eq!(parse(body), (format, (*expected).clone()), "{body}");
        }
    }

    #[test]
    fn mini_program_page_card() {
        let xml = "<xml>\n  <ToUserName><![CDATA[toUser]]></ToUserName>\n  <FromUserName><![CDATA[fromUser]]></FromUserName>\n  <CreateTime>1482048670</CreateTime>\n  <MsgType><![CDATA[miniprogrampage]]></MsgType>\n  <MsgId>1234567890123456</MsgId>\n  <Title><![CDATA[Title]]></Title>\n  <AppId><![CDATA[AppId]]></AppId>\n  <PagePath><![CDATA[PagePath]]></PagePath>\n  <ThumbUrl><![CDATA[ThumbUrl]]></ThumbUrl>\n  <ThumbMediaId><![CDATA[ThumbMediaId]]></ThumbMediaId>\n</xml>";
        let expected = msg(
            MsgKind::MiniProgramPage {
                title: "Title".into(),
                app_id: "AppId".into(),
                page_path: "PagePath".into(),
                thumb_url: "ThumbUrl".into(),
                thumb_media_id: "ThumbMediaId".into(),
            },
            ID,
        );
        assert_eq!(parse(xml).1, expected);
        let json = r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"miniprogrampage","MsgId":1234567890123456,"Title":"title","AppId":"appid","PagePath":"path","ThumbUrl":"","ThumbMediaId":""}"#;
        let MsgKind::MiniProgramPage {
            title,
            app_id,
            page_path,
            thumb_url,
            ..
        } = parse(json).1.kind
        else {
            panic!("not a card");
        };
        assert_eq!(
            (
                title.as_str(),
                app_id.as_str(),
                page_path.as_str(),
                thumb_url.as_str()
            ),
            ("title", "appid", "path", "")
        );
    }

    #[test]
    fn official_account_samples() {
        // Extra elements (MsgDataId, Idx, bizmsgmenuid) are ignored.
        let (_, m) = parse(
            "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[this is a test]]></Content><MsgId>1234567890123456</MsgId><MsgDataId>xxxx</MsgDataId><Idx>xxxx</Idx><bizmsgmenuid>101</bizmsgmenuid></xml>",
        );
        assert_eq!(
            m.kind,
            MsgKind::Text {
                content: "this is a test".into()
            }
        );
        assert_eq!(m.create_time, 1348831860);
        // Voice: another type, kept by name.
        let (_, m) = parse(
            "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1357290913</CreateTime><MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[media_id]]></MediaId><Format><![CDATA[Format]]></Format><MsgId>1234567890123456</MsgId></xml>",
        );
        assert_eq!(
            m.kind,
            MsgKind::Voice {
                media_id: "media_id".into(),
                format: "Format".into(),
                recognition: None,
            }
        );
        assert_eq!(m.kind.type_name(), "voice");
        assert_eq!(m.msg_id, ID);
        // Subscribe by QR code, with a nested element after it.
        let (_, m) = parse(
            "<xml>\n  <ToUserName><![CDATA[toUser]]></ToUserName>\n  <FromUserName><![CDATA[FromUser]]></FromUserName>\n  <CreateTime>123456789</CreateTime>\n  <MsgType><![CDATA[event]]></MsgType>\n  <Event><![CDATA[subscribe]]></Event>\n  <EventKey><![CDATA[qrscene_123123]]></EventKey>\n  <Ticket><![CDATA[TICKET]]></Ticket>\n  <ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType><ScanResult><![CDATA[1]]></ScanResult></ScanCodeInfo>\n</xml>",
        );
        assert_eq!(
            m.kind,
            MsgKind::Event {
                event: "subscribe".into(),
                session_from: None,
                event_key: Some("qrscene_123123".into()),
                kf_account: None,
            }
        );
        assert_eq!(
            (m.from_user_name.as_str(), m.create_time, m.msg_id),
            ("FromUser", 123456789, None)
        );
    }

    #[test]
    fn nested_elements_do_not_break_parsing() {
        let (_, m) = parse(
            "<xml><ToUserName><![CDATA[u]]></ToUserName><TransInfo><KfAccount><![CDATA[test1@test]]></KfAccount><Content>not this</Content></TransInfo><FromUserName>f</FromUserName><MsgType>text</MsgType><Content>this</Content></xml>",
        );
        assert_eq!(
            m.kind,
            MsgKind::Text {
                content: "this".into()
            }
        );
    }

    #[test]
    fn xml_plain_text_and_entities() {
        let (_, m) = parse(
            "<xml><ToUserName>gh_1</ToUserName><FromUserName>o&amp;1</FromUserName><CreateTime> 42 </CreateTime><MsgType>text</MsgType><Content>a &lt;b&gt; &quot;c&quot; &#20320;&#x597D;</Content><MsgId>7</MsgId></xml>",
        );
        assert_eq!(m.from_user_name, "o&1");
        assert_eq!(m.create_time, 42);
        assert_eq!(
            m.kind,
            MsgKind::Text {
                content: "a <b> \"c\" 你好".into()
            }
        );
        assert_eq!(m.msg_id, Some(MsgId::Number(7)));
    }

    #[test]
    fn msg_id_beyond_2_pow_53_is_exact() {
        let big = 6054768590064713728u64;
        assert!(big > 1 << 53);
        let xml = format!(
            "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType><MsgId>{big}</MsgId></xml>"
        );
        assert_eq!(parse(&xml).1.msg_id, Some(MsgId::Number(big)));
        let json =
            format!(r#"{{"ToUserName":"a","FromUserName":"b","MsgType":"text","MsgId":{big}}}"#);
        assert_eq!(parse(&json).1.msg_id, Some(MsgId::Number(big)));
        // 2^53 + 1 would be rounded by a float.
        let json =
            r#"{"ToUserName":"a","FromUserName":"b","MsgType":"text","MsgId":9007199254740993}"#;
        assert_eq!(parse(json).1.msg_id, Some(MsgId::Number(9007199254740993)));
    }

    #[test]
    fn json_msg_id_as_string_and_create_time_as_string() {
        // The cloud-function variant.
        let json = r#"{"ToUserName":"a","FromUserName":"b","CreateTime":"1555684067","MsgType":"text","Content":"hi","MsgId":"49d72d_1555684067"}"#;
        let m = parse(json).1;
        assert_eq!(m.msg_id, Some(MsgId::Text("49d72d_1555684067".into())));
        assert_eq!(m.msg_id.unwrap().to_string(), "49d72d_1555684067");
        assert_eq!(m.create_time, 1555684067);
        // A non-numeric MsgId in XML is kept as text.
        let xml = "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType><MsgId>x_1</MsgId></xml>";
        assert_eq!(parse(xml).1.msg_id, Some(MsgId::Text("x_1".into())));
    }

    #[test]
    fn json_raw_utf8_escapes_and_unknown_fields() {
        let json = "{\"ToUserName\":\"a\",\"FromUserName\":\"b\",\"CreateTime\":1,\"MsgType\":\"text\",\
                    \"Content\":\"\\u4f60\\u597d \\ud83d\\ude00 \u{1F600} line\\nnext\",\
                    \"debug_str\":\"hello world\",\"Nested\":{\"x\":[1,2.5,null]},\"MsgId\":null}";
        let m = parse(json).1;
        assert_eq!(
            m.kind,
            MsgKind::Text {
                content: "你好 😀 😀 line\nnext".into()
            }
        );
        assert_eq!(m.msg_id, None);
    }

    #[test]
    fn defaults_when_optional_fields_are_absent() {
        let m = parse(r#"{"ToUserName":"a","FromUserName":"b","MsgType":"text"}"#).1;
        assert_eq!(
            (m.create_time, m.msg_id, m.kind),
            (
                0,
                None,
                MsgKind::Text {
                    content: String::new()
                }
            )
        );
        let m = parse("<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>event</MsgType><CreateTime/></xml>").1;
        assert_eq!(
            (m.create_time, m.kind),
            (
                0,
                MsgKind::Event {
                    event: String::new(),
                    session_from: None,
                    event_key: None,
                    kf_account: None,
                }
            )
        );
        // JSON event keys may be numbers.
        let m = parse(r#"{"ToUserName":"a","FromUserName":"b","MsgType":"event","Event":"CLICK","EventKey":7}"#).1;
        assert!(matches!(m.kind, MsgKind::Event { event_key: Some(k), .. } if k == "7"));
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"", ParseError::UnknownFormat),
            (b"   \n", ParseError::UnknownFormat),
            (b"success", ParseError::UnknownFormat),
            (b"[1,2]", ParseError::UnknownFormat),
            (b"\xEF\xBB\xBF<xml/>", ParseError::UnknownFormat),
            (b"<xml><Content>\xff</Content></xml>", ParseError::NotUtf8),
            (b"{\"Content\":\"\xc3\"}", ParseError::NotUtf8),
            (
                b"<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><xml><ToUserName>&xxe;</ToUserName></xml>",
                ParseError::Doctype,
            ),
            (b"<xml><FromUserName>b</FromUserName><MsgType>text</MsgType></xml>", ParseError::MissingField("ToUserName")),
            (b"<xml><ToUserName>a</ToUserName><MsgType>text</MsgType></xml>", ParseError::MissingField("FromUserName")),
            (b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName></xml>", ParseError::MissingField("MsgType")),
            (b"<xml><ToUserName></ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType></xml>", ParseError::MissingField("ToUserName")),
            (br#"{"ToUserName":"a","FromUserName":"b"}"#, ParseError::MissingField("MsgType")),
            (br#"{"ToUserName":"a","FromUserName":null,"MsgType":"text"}"#, ParseError::MissingField("FromUserName")),
            (br#"{"ToUserName":"","FromUserName":"b","MsgType":"text"}"#, ParseError::MissingField("ToUserName")),
        ];
        for (body, expected) in cases {
            assert_eq!(
                &parse_message(body).unwrap_err(),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let malformed: &[(&str, Format)] = &[
            ("<xml><ToUserName>a</ToUserName>", Format::Xml),
            ("<xml><ToUserName>a</FromUserName></xml>", Format::Xml),
            ("<xml><Content>&nbsp;</Content></xml>", Format::Xml),
            (
                "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType><CreateTime>soon</CreateTime></xml>",
                Format::Xml,
            ),
            ("{\"ToUserName\":\"a\"", Format::Json),
            ("{\"ToUserName\":\"a\"} trailing", Format::Json),
            (
                r#"{"ToUserName":"a","FromUserName":"b","MsgType":"text","CreateTime":1.5}"#,
                Format::Json,
            ),
            (
                r#"{"ToUserName":"a","FromUserName":"b","MsgType":"text","MsgId":1e3}"#,
                Format::Json,
            ),
            (
                r#"{"ToUserName":"a","FromUserName":"b","MsgType":"text","MsgId":-1}"#,
                Format::Json,
            ),
            (
                r#"{"ToUserName":1,"FromUserName":"b","MsgType":"text"}"#,
                Format::Json,
            ),
            (
                r#"{"ToUserName":"a","ToUserName":"b","FromUserName":"b","MsgType":"text"}"#,
                Format::Json,
            ),
        ];
        for (body, format) in malformed {
            match parse_message(body.as_bytes()) {
                Err(ParseError::Malformed(f, _)) => assert_eq!(f, *format, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn envelope_of_safe_and_compatible_bodies() {
        let safe = "<xml>\n    <ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\n    <Encrypt><![CDATA[abc+/=]]></Encrypt>\n</xml>";
        let env = parse_envelope(safe.as_bytes()).unwrap();
        assert_eq!(
            env,
            Envelope {
                format: Format::Xml,
                to_user_name: Some("gh_97417a04a28d".into()),
                encrypt: Some("abc+/=".into())
            }
        );
        let json = r#"{"ToUserName": "gh_97417a04a28d", "Encrypt": "abc+/="}"#;
        let env = parse_envelope(json.as_bytes()).unwrap();
        assert_eq!(
            (env.format, env.encrypt.as_deref()),
            (Format::Json, Some("abc+/="))
        );
        // Compatible: plaintext fields around Encrypt.
        let m = msg(
            MsgKind::Text {
                content: "hi".into(),
            },
            ID,
        );
        for format in [Format::Xml, Format::Json] {
            let body = render_compatible(format, &m, "ZW5j");
            let env = parse_envelope(body.as_bytes()).unwrap();
            assert_eq!(
                (
                    env.format,
                    env.to_user_name.as_deref(),
                    env.encrypt.as_deref()
                ),
                (format, Some("toUser"), Some("ZW5j"))
            );
            assert_eq!(parse_message(body.as_bytes()).unwrap(), (format, m.clone()));
            let body = render_envelope(format, "gh_1", "ZW5j");
            let env = parse_envelope(body.as_bytes()).unwrap();
            assert_eq!(
                (env.to_user_name.as_deref(), env.encrypt.as_deref()),
                (Some("gh_1"), Some("ZW5j"))
            );
        }
        // A plaintext body has no Encrypt: the caller decides.
        let env = parse_envelope(render_push(Format::Xml, &m).as_bytes()).unwrap();
        assert_eq!(env.encrypt, None);
        assert_eq!(
            parse_envelope(b"<!DOCTYPE x><xml/>"),
            Err(ParseError::Doctype)
        );
        assert_eq!(parse_envelope(b"\xff{"), Err(ParseError::UnknownFormat));
        assert_eq!(parse_envelope(b"{\xff}"), Err(ParseError::NotUtf8));
        assert!(matches!(
            parse_envelope(b"{\"Encrypt\":1}"),
            Err(ParseError::Malformed(Format::Json, _))
        ));
        assert!(matches!(
            parse_envelope(b"<xml><Encrypt>"),
            Err(ParseError::Malformed(Format::Xml, _))
        ));
    }

    #[test]
    fn render_push_shapes() {
        let m = msg(
            MsgKind::Text {
                content: "this is a test".into(),
            },
            ID,
        );
        assert_eq!(
            render_push(Format::Json, &m),
            r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"text","Content":"this is a test","MsgId":1234567890123456}"#
        );
        assert_eq!(
            render_push(Format::Xml, &m),
            "<xml>\n<ToUserName><![CDATA[toUser]]></ToUserName>\n<FromUserName><![CDATA[fromUser]]></FromUserName>\n<CreateTime>1482048670</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[this is a test]]></Content>\n<MsgId>1234567890123456</MsgId>\n</xml>"
        );
        let e = msg(
            MsgKind::Event {
                event: "user_enter_tempsession".into(),
                session_from: Some("s".into()),
                event_key: None,
                kf_account: None,
            },
            None,
        );
        assert_eq!(
            render_push(Format::Json, &e),
            r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"event","Event":"user_enter_tempsession","SessionFrom":"s"}"#
        );
        let t = msg(
            MsgKind::Text {
                content: "x".into(),
            },
            Some(MsgId::Text("id_1".into())),
        );
        assert!(render_push(Format::Json, &t).ends_with(r#""MsgId":"id_1"}"#));
    }

    /// Every kind round-trips through both formats.
    #[test]
    fn render_then_parse_every_kind() {
        let kinds = [
            MsgKind::Text {
                content: "a]]>b <&> 😀".into(),
            },
            MsgKind::Image {
                pic_url: "http://x/y?a=1&b=2".into(),
                media_id: "m".into(),
            },
            MsgKind::MiniProgramPage {
                title: "t".into(),
                app_id: "wx1".into(),
                page_path: "pages/index?x=1".into(),
                thumb_url: "".into(),
                thumb_media_id: "th".into(),
            },
            MsgKind::Event {
                event: "subscribe".into(),
                session_from: None,
                event_key: Some("".into()),
                kf_account: None,
            },
            MsgKind::Event {
                event: "user_enter_tempsession".into(),
                session_from: Some("from".into()),
                event_key: None,
                kf_account: None,
            },
            MsgKind::Other {
                msg_type: "device_text".into(),
            },
            MsgKind::Voice {
                media_id: "m".into(),
                format: "amr".into(),
                recognition: Some("我要注销".into()),
            },
        ];
        for kind in kinds {
            for id in [None, ID, Some(MsgId::Text("c_1".into()))] {
                let m = msg(kind.clone(), id);
                for format in [Format::Xml, Format::Json] {
                    assert_eq!(
                        parse_message(render_push(format, &m).as_bytes()).unwrap(),
                        (format, m.clone())
                    );
                }
            }
        }
    }

    /// What an XML rendering keeps of a text: XML 1.0 characters only.
    fn xml_visible(s: &str) -> String {
        s.chars().filter(|&c| xml::is_xml_char(c)).collect()
    }

    proptest! {
        #[test]
        fn render_push_round_trips_any_text(
            content in "(.|]]>|<|&|\\]|>|😀|\r|\n)*",
            to in "[^\u{0}]{1,20}",
            from in "[a-zA-Z0-9_-]{1,28}",
            create_time in any::<i64>(),
            id in proptest::option::of(any::<u64>()),
        ) {
            let m = InboundMessage {
                to_user_name: to.clone(),
                from_user_name: from.into(),
                create_time,
                msg_id: id.map(MsgId::Number),
                kind: MsgKind::Text { content: content.clone() },
            };
            let (_, json) = parse_message(render_push(Format::Json, &m).as_bytes()).unwrap();
            prop_assert_eq!(&json, &m);
            let visible_to = xml_visible(&to);
            prop_assume!(!visible_to.is_empty());
            let (_, xml) = parse_message(render_push(Format::Xml, &m).as_bytes()).unwrap();
            let expected = InboundMessage {
                to_user_name: visible_to,
                kind: MsgKind::Text { content: xml_visible(&content) },
                ..m
            };
            prop_assert_eq!(xml, expected);
        }

        #[test]
        fn parsers_never_panic_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_message(&body);
            let _ = parse_envelope(&body);
        }

        #[test]
        fn parsers_never_panic_on_xml_like_text(body in "[<>/!\\[\\]CDATxmlToUserNamsgIdCreatTie&;#0-9a-f \"=?-]{0,200}") {
            let _ = parse_message(body.as_bytes());
            let _ = parse_envelope(body.as_bytes());
        }

        #[test]
        fn parsers_never_panic_on_json_like_text(body in "\\{[\"{}\\[\\]:,0-9a-zA-Z\\\\.eE+ -]{0,200}") {
            let _ = parse_message(body.as_bytes());
            let _ = parse_envelope(body.as_bytes());
        }

        #[test]
        fn parsers_never_panic_on_mutated_pushes(cut in 0usize..400, byte in any::<u8>(), at in 0usize..400) {
            let m = InboundMessage {
                to_user_name: "gh_1".into(),
                from_user_name: "o_1".into(),
                create_time: 1,
                msg_id: ID,
                kind: MsgKind::Text { content: "hi ]]> &".into() },
            };
            for format in [Format::Xml, Format::Json] {
                let mut body = render_compatible(format, &m, "ZW5j").into_bytes();
                if at < body.len() {
                    body[at] = byte;
                }
                body.truncate(cut);
                let _ = parse_message(&body);
                let _ = parse_envelope(&body);
            }
        }
    }
}
