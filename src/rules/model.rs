//! The serde mirror of one entry under `rules:` in a rules file (SPEC §4), with the position of
//! every value that a later check may need to point at.
//!
//! Owns: the shape of a rule as written (field names, which values are lists, which are optional).
//! Unknown keys are refused here (`deny_unknown_fields`), wrong types too. What the values mean
//! (normalization, regex syntax, schedules, cross-rule checks) is decided in `compile`, not here.
//! Must not depend on the matcher or on file I/O; it only describes data.

use std::collections::BTreeMap;
use std::fmt;

use marked_yaml::{Span, Spanned};
use serde::Deserialize;
use serde::de::{self, SeqAccess, Visitor};

/// One rule as written under `rules:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique across all files; names the rule in logs, stats and `kefu try`.
    pub id: Spanned<String>,
    /// Higher wins; ties are broken by load order. Default 0.
    #[serde(default)]
    pub priority: Option<Spanned<i64>>,
    /// `default: true` marks the rule used when no rule and no FAQ entry applies.
    #[serde(default)]
    pub default: Option<Spanned<bool>>,
    /// Any one of these appears in the message.
    #[serde(default)]
    pub keywords: Option<Texts>,
    /// Every one of these appears in the message.
    #[serde(default)]
    pub all: Option<Texts>,
    /// None of these appears in the message.
    #[serde(default)]
    pub not: Option<Texts>,
    /// The whole (normalized) message equals one of these.
    #[serde(default)]
    pub exact: Option<Texts>,
    /// Any one of these regular expressions matches the message.
    #[serde(default)]
    pub regex: Option<Texts>,
    /// `text` unless given (or `event` when only `event` is given).
    #[serde(default)]
    pub msg_type: Option<Spanned<String>>,
    /// The event name of an `event` message (`user_enter_tempsession`, …).
    #[serde(default)]
    pub event: Option<Spanned<String>>,
    /// The `EventKey` of an event (a menu's key, a QR code's scene): a text or a list, any one
    /// equals it (a subscribe event's `qrscene_` prefix is removed first).
    #[serde(default)]
    pub event_key: Option<Texts>,
    /// Days and hours, in the config's time zone, when the rule applies.
    #[serde(default)]
    pub schedule: Option<Spanned<ScheduleSpec>>,
    /// For a default rule: applies from the user's N-th consecutive message that nothing
    /// answered.
    #[serde(default)]
    pub misses: Option<Spanned<u32>>,
    /// Reply templates: one picked at random, or all in order with `reply_all`.
    #[serde(default)]
    pub reply: Option<Texts>,
    /// Send every reply, in order, instead of one picked at random.
    #[serde(default)]
    pub reply_all: Option<Spanned<bool>>,
    /// Answer with this FAQ entry.
    #[serde(default)]
    pub faq: Option<Spanned<String>>,
    /// Ask the operator's backend first; `reply` may then use `{fetch.a.b}`.
    #[serde(default)]
    pub fetch: Option<Spanned<FetchSpec>>,
    /// With `fetch`: the reply when the call or a field fails.
    #[serde(default)]
    pub fallback: Option<Spanned<String>>,
    /// Transfer to the human customer-service tool, after any replies.
    #[serde(default)]
    pub handoff: Option<Spanned<bool>>,
    /// An image message (a media id uploaded to WeChat).
    #[serde(default)]
    pub image: Option<Spanned<ImageSpec>>,
    /// A link card.
    #[serde(default)]
    pub link: Option<Spanned<LinkSpec>>,
    /// A Mini Program card.
    #[serde(default)]
    pub miniprogrampage: Option<Spanned<MiniProgramPageSpec>>,
    /// Messages this rule must win (checked on every load).
    #[serde(default)]
    pub examples: Option<Texts>,
    /// Messages this rule must not win (checked on every load).
    #[serde(default)]
    pub not_examples: Option<Texts>,
}

/// `schedule: {days: [...], from: "HH:MM", to: "HH:MM"}`; every part optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// `mon` … `sun`; every day when left out.
    #[serde(default)]
    pub days: Option<Texts>,
    /// Start of the window; midnight when left out.
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    /// End of the window (exclusive); midnight at the end of the day when left out. Earlier than
    /// `from` means the window wraps past midnight.
    #[serde(default)]
    pub to: Option<Spanned<String>>,
}

/// `image: {media_id}` or `image: {file}` (exactly one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The id WeChat gave the uploaded image.
    #[serde(default)]
    pub media_id: Option<String>,
    /// A JPG or PNG file, relative to the rules folder, uploaded by kefu.
    #[serde(default)]
    pub file: Option<Spanned<String>>,
}

/// `fetch: {url, method, headers, timeout_ms}` (SPEC §10).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchSpec {
    /// `http(s)://host/…`; `{name}` captures are URL-encoded into it; `${VAR}` from the
    /// environment.
    pub url: Spanned<String>,
    /// `GET` (the default) or `POST`.
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    /// Request headers; values may use `${VAR}`.
    #[serde(default)]
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    /// How long the call may take.
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
}

/// `link: {title, description, url, thumb_url}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Shown in bold on the card.
    pub title: String,
    /// Shown under the title; may be left out.
    #[serde(default)]
    pub description: String,
    /// Where a tap leads.
    pub url: String,
    /// The card's picture; may be left out.
    #[serde(default)]
    pub thumb_url: String,
}

/// `miniprogrampage: {title, pagepath, thumb_media_id | thumb_file}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniProgramPageSpec {
    /// Shown on the card.
    pub title: String,
    /// The page a tap opens.
    pub pagepath: String,
    /// The card's picture (an uploaded media id).
    #[serde(default)]
    pub thumb_media_id: Option<String>,
    /// The card's picture as a file, relative to the rules folder, uploaded by kefu.
    #[serde(default)]
    pub thumb_file: Option<Spanned<String>>,
}

/// A text or a list of texts (`reply: 你好` or `reply: [你好, 您好]`), with positions.
pub type Texts = Spanned<OneOrMany>;

/// The value behind [`Texts`].
#[derive(Debug)]
pub enum OneOrMany {
    /// A single text: its position is the span of the enclosing [`Spanned`].
    One(String),
    /// A list: each item keeps its own position.
    Many(Vec<Spanned<String>>),
}

/// The items of a [`Texts`] value, each with its position.
pub fn texts(value: &Texts) -> Vec<(String, Span)> {
    match &**value {
        OneOrMany::One(text) => vec![(text.clone(), *value.span())],
        OneOrMany::Many(items) => items
            .iter()
            .map(|item| (String::clone(item), *item.span()))
            .collect(),
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;

        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a text or a list of texts")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(value.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Result<RuleSpec, String> {
        let node = marked_yaml::parse_yaml(0, yaml).map_err(|e| e.to_string())?;
        marked_yaml::from_node(&node).map_err(|e| e.to_string())
    }

    #[test]
    fn a_text_or_a_list_both_read_with_positions() {
        let spec = rule("id: a\nreply: 你好\nkeywords: [人工, 真人]\n").unwrap();
        let reply = texts(spec.reply.as_ref().unwrap());
        assert_eq!(reply.len(), 1);
        assert_eq!(reply[0].0, "你好");
        assert_eq!(reply[0].1.start().unwrap().line(), 2);
        let keywords = texts(spec.keywords.as_ref().unwrap());
        assert_eq!(keywords[1].0, "真人");
        assert_eq!(keywords[1].1.start().unwrap().column(), 16);
    }

    #[test]
    fn numbers_are_read_as_texts_where_a_text_is_expected() {
        let spec = rule("id: a\nkeywords: [110, 120]\n").unwrap();
        let keywords = texts(spec.keywords.as_ref().unwrap());
        assert_eq!(keywords[0].0, "110");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = rule("id: a\nkeyword: [x]\n").unwrap_err();
        assert!(err.contains("keyword"), "{err}");
    }

    #[test]
    fn a_map_is_not_a_text() {
        let err = rule("id: a\nreply: {a: b}\n").unwrap_err();
        assert!(err.contains("a text or a list of texts"), "{err}");
    }
}
