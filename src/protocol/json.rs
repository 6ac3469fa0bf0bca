//! The JSON both ways: lenient scalar readers for the fields WeChat types loosely, and a writer
//! for JSON strings.
//!
//! In: `MsgId` is a u64 or a string and never goes through f64 (it exceeds 2^53);
//! `CreateTime`/`TimeStamp` are integers, a numeric string is accepted. Out: raw UTF-8, only `"`,
//! `\` and control characters escaped, as serde_json does and as WeChat wants (doc §8.1).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

use super::MsgId;

/// An integer field that may arrive as a number or as a numeric string; floats are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JsonInt(pub i64);

impl<'de> serde::Deserialize<'de> for JsonInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsonInt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string holding one")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonInt, E> {
                Ok(JsonInt(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonInt, E> {
                i64::try_from(v)
                    .map(JsonInt)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonInt, E> {
                v.trim()
                    .parse()
                    .map(JsonInt)
                    .map_err(|_| E::custom("string does not hold an integer"))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `MsgId`: a non-negative integer (kept exact as u64) or a string, kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JsonMsgId(pub MsgId);

impl<'de> serde::Deserialize<'de> for JsonMsgId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsonMsgId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonMsgId, E> {
                Ok(JsonMsgId(MsgId::Number(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonMsgId, E> {
                u64::try_from(v)
                    .map(|v| JsonMsgId(MsgId::Number(v)))
                    .map_err(|_| E::custom("negative MsgId"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonMsgId, E> {
                Ok(JsonMsgId(MsgId::Text(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<JsonMsgId, E> {
                Ok(JsonMsgId(MsgId::Text(v)))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A text field that some pushes may carry as a number (`EventKey`, `Nonce`): kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JsonText(pub String);

impl<'de> serde::Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsonText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonText, E> {
                Ok(JsonText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonText, E> {
                Ok(JsonText(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonText, E> {
                Ok(JsonText(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<JsonText, E> {
                Ok(JsonText(v))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Writes `s` as a JSON string literal: raw UTF-8, escaping only `"`, `\` and controls.
pub(super) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    // The common case, nothing to escape, is copied whole.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{C}' => out.push_str("\\f"),
            c if c < '\u{20}' => {
                use std::fmt::Write as _;
                // Writing into a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `"name":"value"` (a leading comma when it is not the first member).
pub(super) fn push_str_member(out: &mut String, name: &str, value: &str) {
    push_name(out, name);
    push_str(out, value);
}

/// Writes `"name":value` for a number.
pub(super) fn push_number_member(out: &mut String, name: &str, value: impl fmt::Display) {
    use std::fmt::Write as _;
    push_name(out, name);
    // Writing into a String cannot fail.
    let _ = write!(out, "{value}");
}

fn push_name(out: &mut String, name: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    push_str(out, name);
    out.push(':');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_raw_utf8_and_match_serde_json() {
        let samples = [
            "plain",
            "引号\"反斜杠\\",
            "<a href=\"x\">&amp;</a>",
            "line\nfeed\r\ttab\u{8}\u{C}\u{0}\u{1F}\u{7F}",
            "emoji 😀 and \u{2028}",
        ];
        for s in samples {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
        let mut out = String::new();
        push_str(&mut out, "<&>中");
        assert_eq!(out, "\"<&>中\"");
    }

    #[test]
    fn members() {
        let mut out = String::from("{");
        push_str_member(&mut out, "A", "x");
        push_number_member(&mut out, "B", 7);
        out.push('}');
        assert_eq!(out, r#"{"A":"x","B":7}"#);
    }

    #[test]
    fn msg_id_is_never_a_float() {
        let id: JsonMsgId = serde_json::from_str("6054768590064713728").unwrap();
        assert_eq!(id.0, MsgId::Number(6054768590064713728));
        let id: JsonMsgId = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(id.0, MsgId::Number(u64::MAX));
        let id: JsonMsgId = serde_json::from_str(r#""49d72d_1555684067""#).unwrap();
        assert_eq!(id.0, MsgId::Text("49d72d_1555684067".into()));
        for bad in ["1.5", "-1", "18446744073709551616", "true", "null", "{}"] {
            assert!(serde_json::from_str::<JsonMsgId>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ints_accept_numeric_strings_only() {
        assert_eq!(
            serde_json::from_str::<JsonInt>("1482048670").unwrap().0,
            1482048670
        );
        assert_eq!(
            serde_json::from_str::<JsonInt>(r#"" 1482048670""#)
                .unwrap()
                .0,
            1482048670
        );
        assert_eq!(serde_json::from_str::<JsonInt>("-5").unwrap().0, -5);
        for bad in ["1.0", r#""x""#, "9223372036854775808", "[]"] {
            assert!(serde_json::from_str::<JsonInt>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_accepts_integers() {
        assert_eq!(
            serde_json::from_str::<JsonText>("415670741").unwrap().0,
            "415670741"
        );
        assert_eq!(
            serde_json::from_str::<JsonText>(r#""qrscene_1""#)
                .unwrap()
                .0,
            "qrscene_1"
        );
        assert!(serde_json::from_str::<JsonText>("1.5").is_err());
    }
}
