//! Messages kefu sends to a user: through the customer-service send API (Mini Programs, and
//! official accounts beyond the first reply) or, for an official account's first text, passively
//! in the HTTP response.
//!
//! The serde form is what the outbox stores; the WeChat request body is built by [`crate::wechat`].
//!
//! Some messages are not ready to send when they are decided (SPEC §10): an image read from a
//! file ([`OutboundMessage::ImageFile`], [`OutboundMessage::MiniProgramPageFile`]) is uploaded
//! first, and a reply composed from the operator's backend ([`OutboundMessage::Fetch`]) is
//! fetched first. The outbox stores them as decided; the outbox worker prepares them just before
//! the send ([`crate::delivery`]), so a crash before that neither loses them nor sends them twice.
//! [`split_text`] cuts a text over WeChat's 2,048-byte limit into parts that fit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// WeChat's limit on one text message's content, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 2048;

/// One message to one user, as decided by a rule or the FAQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboundMessage {
    Text {
        content: String,
    },
    Image {
        media_id: String,
    },
    Link {
        title: String,
        description: String,
        url: String,
        thumb_url: String,
    },
    #[serde(rename = "miniprogrampage")]
    MiniProgramPage {
        title: String,
        pagepath: String,
        thumb_media_id: String,
    },
    /// An image read from a file under the rules folder, uploaded (or found in the media
    /// cache) just before the send.
    ImageFile {
        /// The file as the rule names it, relative to the rules folder (for operators).
        name: String,
        /// The file's absolute path.
        path: String,
    },
    /// A Mini Program card whose picture is a file, uploaded just before the send.
    #[serde(rename = "miniprogrampage_file")]
    MiniProgramPageFile {
        title: String,
        pagepath: String,
        /// The file as the rule names it, relative to the rules folder.
        thumb_name: String,
        /// The file's absolute path.
        thumb_path: String,
    },
    /// A text composed from the answer of the operator's backend, fetched just before the send
    /// (a Mini Program) or within the answer budget (an Official Account).
    Fetch(Box<FetchReply>),
}

/// A reply that asks the operator's backend first: the request to make and how to compose
/// the text from its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchReply {
    /// The rule that asked (metrics, logs).
    pub rule: String,
    /// What to call.
    pub request: FetchRequest,
    /// The reply template, captures already filled; `{fetch.a.b}` is filled from the answer.
    pub template: String,
    /// The text sent when the call or a field fails.
    pub fallback: String,
}

/// One call to the operator's backend, as decided. `${VAR}` in the URL and header values is
/// left as written and filled from the environment only when the call is made, so that a
/// secret never reaches the outbox or a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The URL with the captures filled in, URL-encoded.
    pub url: String,
    /// Header names and values (values may hold `${VAR}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long the call may take, in milliseconds.
    pub timeout_ms: u64,
    /// The message's text (sent in a `POST` body, with app and openid added at the call).
    #[serde(default)]
    pub text: String,
    /// The rule's captures: a `POST` body's `captures`, and `{name}` in the reply template.
    #[serde(default)]
    pub captures: BTreeMap<String, String>,
}

impl OutboundMessage {
    pub fn text(content: impl Into<String>) -> Self {
        Self::Text {
            content: content.into(),
        }
    }

    /// What an operator or `kefu try` sees of the message.
    pub fn preview(&self) -> String {
        match self {
            Self::Text { content } => content.clone(),
            Self::Image { media_id } => format!("[image {media_id}]"),
            Self::Link { title, url, .. } => format!("[link {title} {url}]"),
            Self::MiniProgramPage {
                title, pagepath, ..
            } => format!("[miniprogrampage {title} {pagepath}]"),
            Self::ImageFile { name, .. } => format!("[image {name}]"),
            Self::MiniProgramPageFile {
                title, pagepath, ..
            } => format!("[miniprogrampage {title} {pagepath}]"),
            Self::Fetch(f) => {
                // The captures shown filled in; `{fetch.…}` waits for the backend's answer.
                let shown = f
                    .request
                    .captures
                    .iter()
                    .fold(f.template.clone(), |t, (k, v)| {
                        t.replace(&format!("{{{k}}}"), v)
                    });
                format!(
                    "{FETCH_PREVIEW_PREFIX}{} {}] {shown}",
                    f.request.method, f.request.url
                )
            }
        }
    }
}

/// How a `fetch` reply's preview begins (the conversation log matches its send by it).
pub const FETCH_PREVIEW_PREFIX: &str = "[fetch ";

/// Cuts `text` into parts of at most `max` bytes, in order: at line ends where it can (the
/// newline stays with the line before), else at a character boundary. A text that fits is one
/// part; an empty text is one empty part.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let max = max.max(4);
    if text.len() <= max {
        return vec![text.to_string()];
    }
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let window = &rest[..cut];
        let at = match window.rfind('\n') {
            Some(i) if i > 0 => i + 1,
            _ => cut,
        };
        let (head, tail) = rest.split_at(at);
        let head = head.trim_end_matches('\n');
        if !head.trim().is_empty() {
            parts.push(head.to_string());
        }
        rest = tail;
    }
    if !rest.trim().is_empty() {
        parts.push(rest.to_string());
    }
    if parts.is_empty() {
        parts.push(String::new());
    }
    parts
}

/// Replaces every text over [`MAX_TEXT_BYTES`] by its parts, keeping the order of messages.
pub fn split_long_texts(messages: Vec<OutboundMessage>) -> Vec<OutboundMessage> {
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        match message {
            OutboundMessage::Text { content } if content.len() > MAX_TEXT_BYTES => out.extend(
                split_text(&content, MAX_TEXT_BYTES)
                    .into_iter()
                    .map(OutboundMessage::text),
            ),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_short_text_is_one_part() {
        assert_eq!(split_text("你好", 2048), vec!["你好".to_string()]);
    }

    #[test]
    fn a_long_text_is_cut_at_line_ends_in_order() {
        let line = format!("{}\n", "字".repeat(100)); // 301 bytes
        let text = line.repeat(20); // 6,020 bytes
        let parts = split_text(&text, 2048);
        assert!(parts.len() >= 3, "{}", parts.len());
        for part in &parts {
            assert!(part.len() <= 2048);
            assert!(
                part.lines().all(|l| l.chars().count() == 100),
                "cut inside a line"
            );
        }
        assert_eq!(parts.join("\n").trim_end(), text.trim_end());
    }

    #[test]
    fn a_line_longer_than_the_limit_is_cut_at_a_char_boundary() {
        let text = "字".repeat(1000); // 3,000 bytes, no newline
        let parts = split_text(&text, 2048);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), 2046);
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn long_texts_among_messages_keep_their_place() {
        let messages = vec![
            OutboundMessage::text("a"),
            OutboundMessage::text("b\n".repeat(2000)),
            OutboundMessage::Image {
                media_id: "m".into(),
            },
        ];
        let out = split_long_texts(messages);
        assert!(out.len() >= 4);
        assert_eq!(out[0], OutboundMessage::text("a"));
        assert!(matches!(out.last(), Some(OutboundMessage::Image { .. })));
    }

    #[test]
    fn fetch_replies_round_trip_through_serde() {
        let m = OutboundMessage::Fetch(Box::new(FetchReply {
            rule: "r".into(),
            request: FetchRequest {
                method: "GET".into(),
                url: "https://h/x".into(),
                headers: BTreeMap::from([("A".into(), "${T}".into())]),
                timeout_ms: 100,
                text: String::new(),
                captures: BTreeMap::new(),
            },
            template: "{fetch.a}".into(),
            fallback: "f".into(),
        }));
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<OutboundMessage>(&json).unwrap(), m);
    }

    #[test]
    fn a_fetch_reply_is_previewed_with_its_captures_filled_in() {
        let m = OutboundMessage::Fetch(Box::new(FetchReply {
            rule: "r".into(),
            request: FetchRequest {
                method: "GET".into(),
                url: "http://127.0.0.1:8000/api/orders/42".into(),
                headers: BTreeMap::new(),
                timeout_ms: 100,
                text: String::new(),
                captures: BTreeMap::from([("order".into(), "42".into())]),
            },
            template: "订单 {order}：{fetch.status}".into(),
            fallback: "f".into(),
        }));
        assert_eq!(
            m.preview(),
            "[fetch GET http://127.0.0.1:8000/api/orders/42] 订单 42：{fetch.status}"
        );
    }

    proptest! {
        #[test]
        fn parts_fit_and_lose_nothing_but_newlines(text in "([a-z字]{1,90}\n){0,60}[a-z字]{0,90}") {
            let parts = split_text(&text, 64);
            for p in &parts {
                prop_assert!(p.len() <= 64);
            }
            let strip = |s: &str| s.chars().filter(|c| *c != '\n').collect::<String>();
            let joined: String = parts.iter().map(|p| strip(p)).collect();
            prop_assert_eq!(joined, strip(&text));
        }
    }
}
