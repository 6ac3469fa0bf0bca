//! Passive replies in the push's own format (protocol doc §3.7, §5).
//!
//! Owns the bodies the webhook answers with: `success`, `transfer_customer_service`, an official
//! account's passive text, and the encrypted envelope around any of them; and reading the
//! envelope back, for `kefu send`. Encryption itself lives in [`super::crypto`].

use std::borrow::Cow;

use super::Format;
use super::emit::Emitter;
use super::json::{JsonInt, JsonText};
use super::message::{ParseError, json_error, prepare};
use super::xml;

/// The body that tells WeChat "received, nothing to transfer".
pub const SUCCESS: &str = "success";

/// `transfer_customer_service`: `to_user` is the user's openid, `from_user` the app's original id.
pub fn transfer(format: Format, to_user: &str, from_user: &str, create_time: i64) -> String {
    let mut e = Emitter::new(format, 192 + to_user.len() + from_user.len());
    e.text("ToUserName", to_user)
        .text("FromUserName", from_user)
        .number("CreateTime", create_time)
        .text("MsgType", "transfer_customer_service");
    e.finish()
}

/// An official account's passive text reply (XML).
pub fn text(to_user: &str, from_user: &str, create_time: i64, content: &str) -> String {
    let mut e = Emitter::new(
        Format::Xml,
        // The markup is 196 bytes and CreateTime up to 20 more.
        224 + to_user.len() + from_user.len() + content.len(),
    );
    e.text("ToUserName", to_user)
        .text("FromUserName", from_user)
        .number("CreateTime", create_time)
        .text("MsgType", "text")
        .text("Content", content);
    e.finish()
}

/// The encrypted reply envelope (`Encrypt`, `MsgSignature`, `TimeStamp`, `Nonce`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedReply {
    pub encrypt: String,
    pub msg_signature: String,
    pub timestamp: i64,
    pub nonce: String,
}

/// Renders the envelope in the given format: XML as the official template, JSON with
/// `TimeStamp` a number and `Nonce` a string (doc §3.7).
pub fn encrypted(format: Format, reply: &EncryptedReply) -> String {
    let mut e = Emitter::new(
        format,
        160 + reply.encrypt.len() + reply.msg_signature.len() + reply.nonce.len(),
    );
    e.text("Encrypt", &reply.encrypt)
        .text("MsgSignature", &reply.msg_signature)
        .number("TimeStamp", reply.timestamp)
        .text("Nonce", &reply.nonce);
    e.finish()
}

/// Parses an encrypted reply (what `kefu send` receives back), in either format. All four
/// fields are required.
pub fn parse_encrypted(body: &[u8]) -> Result<EncryptedReply, ParseError> {
    let (format, text) = prepare(body)?;
    let (encrypt, msg_signature, timestamp, nonce) = match format {
        Format::Xml => {
            let mut slots = [None, None, None, None];
            xml::scan(
                text,
                |name| match name {
                    b"Encrypt" => Some(0),
                    b"MsgSignature" => Some(1),
                    b"TimeStamp" => Some(2),
                    b"Nonce" => Some(3),
                    _ => None,
                },
                &mut slots,
            )?;
            let [encrypt, msg_signature, timestamp, nonce] = slots;
            (
                encrypt.map(Cow::into_owned),
                msg_signature.map(Cow::into_owned),
                xml::parse_int(timestamp.as_deref(), "TimeStamp")?,
                nonce.map(Cow::into_owned),
            )
        }
        Format::Json => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct JsonReply {
                encrypt: Option<String>,
                msg_signature: Option<String>,
                time_stamp: Option<JsonInt>,
                nonce: Option<JsonText>,
            }
            let r: JsonReply = serde_json::from_str(text).map_err(json_error)?;
            (
                r.encrypt,
                r.msg_signature,
                r.time_stamp.map(|t| t.0),
                r.nonce.map(|n| n.0),
            )
        }
    };
    Ok(EncryptedReply {
        encrypt: encrypt.ok_or(ParseError::MissingField("Encrypt"))?,
        msg_signature: msg_signature.ok_or(ParseError::MissingField("MsgSignature"))?,
        timestamp: timestamp.ok_or(ParseError::MissingField("TimeStamp"))?,
        nonce: nonce.ok_or(ParseError::MissingField("Nonce"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quick_xml::Reader;
    use quick_xml::events::Event;

    /// Reads the text of `<name>` with quick-xml directly, independently of our own reader.
    fn element_text(xml: &str, name: &str) -> Option<String> {
        let mut reader = Reader::from_str(xml);
        let mut inside = false;
        let mut text: Option<String> = None;
        loop {
            match reader.read_event().unwrap() {
                Event::Start(e) if e.name().as_ref() == name.as_bytes() => {
                    inside = true;
                    text = Some(String::new());
                }
                Event::End(e) if e.name().as_ref() == name.as_bytes() => inside = false,
                Event::CData(c) if inside => text.as_mut()?.push_str(&c.decode().unwrap()),
                Event::Text(t) if inside => text.as_mut()?.push_str(&t.unescape().unwrap()),
                Event::Eof => return text,
                _ => {}
            }
        }
    }

    #[test]
    fn transfer_xml_is_the_documented_shape() {
        assert_eq!(
            transfer(Format::Xml, "touser", "fromuser", 1399197672),
            "<xml>\n<ToUserName><![CDATA[touser]]></ToUserName>\n<FromUserName><![CDATA[fromuser]]></FromUserName>\n<CreateTime>1399197672</CreateTime>\n<MsgType><![CDATA[transfer_customer_service]]></MsgType>\n</xml>"
        );
    }

    #[test]
    fn transfer_json_is_the_documented_shape() {
        let body = transfer(
            Format::Json,
            "o9AgO5Kd5ggOC-bXrbNODIiE3bGY",
            "gh_97417a04a28d",
            1714112445,
        );
        assert_eq!(
            body,
            r#"{"ToUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","FromUserName":"gh_97417a04a28d","CreateTime":1714112445,"MsgType":"transfer_customer_service"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["CreateTime"].is_i64());
    }

    #[test]
    fn transfer_parses_back_as_a_push() {
        for format in [Format::Xml, Format::Json] {
            let (f, m) =
                super::super::message::parse_message(transfer(format, "o1", "gh_1", 5).as_bytes())
                    .unwrap();
            assert_eq!(f, format);
            assert_eq!(
                (
                    m.to_user_name.as_str(),
                    m.from_user_name.as_str(),
                    m.create_time
                ),
                ("o1", "gh_1", 5)
            );
            assert_eq!(m.kind.type_name(), "transfer_customer_service");
        }
    }

    #[test]
    fn text_reply_is_the_documented_shape() {
        assert_eq!(
            text("toUser", "fromUser", 12345678, "你好"),
            "<xml>\n<ToUserName><![CDATA[toUser]]></ToUserName>\n<FromUserName><![CDATA[fromUser]]></FromUserName>\n<CreateTime>12345678</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[你好]]></Content>\n</xml>"
        );
    }

    #[test]
    fn text_reply_survives_cdata_terminators_and_illegal_chars() {
        let body = text("o1", "gh_1", 1, "a]]><script>&amp;\u{0}\u{1b}b\nc]]]>");
        assert!(body.contains("a]]]]><![CDATA[>"));
        assert_eq!(
            element_text(&body, "Content").as_deref(),
            Some("a]]><script>&amp;b\nc]]]>")
        );
    }

    #[test]
    fn encrypted_xml_is_the_official_template() {
        let r = EncryptedReply {
            encrypt: "ELGd+/==".into(),
            msg_signature: "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1".into(),
            timestamp: 1713424427,
            nonce: "415670741".into(),
        };
        assert_eq!(
            encrypted(Format::Xml, &r),
            "<xml>\n<Encrypt><![CDATA[ELGd+/==]]></Encrypt>\n<MsgSignature><![CDATA[1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1]]></MsgSignature>\n<TimeStamp>1713424427</TimeStamp>\n<Nonce><![CDATA[415670741]]></Nonce>\n</xml>"
        );
        assert_eq!(
            encrypted(Format::Json, &r),
            r#"{"Encrypt":"ELGd+/==","MsgSignature":"1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1","TimeStamp":1713424427,"Nonce":"415670741"}"#
        );
        for format in [Format::Xml, Format::Json] {
            assert_eq!(
                parse_encrypted(encrypted(format, &r).as_bytes()).unwrap(),
                r
            );
        }
    }

    #[test]
    fn parse_encrypted_reads_the_official_json_example() {
        let body = r#"{
    "Encrypt": "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==",
    "MsgSignature": "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1",
    "TimeStamp": 1713424427,
    "Nonce": "415670741"
}"#;
        let r = parse_encrypted(body.as_bytes()).unwrap();
        assert_eq!((r.timestamp, r.nonce.as_str()), (1713424427, "415670741"));
        assert!(r.encrypt.starts_with("ELGduP2Y"));
        // Lenient on the scalar types, strict on presence.
        let r = parse_encrypted(
            br#"{"Encrypt":"e","MsgSignature":"s","TimeStamp":"17","Nonce":415670741}"#,
        )
        .unwrap();
        assert_eq!((r.timestamp, r.nonce.as_str()), (17, "415670741"));
    }

    #[test]
    fn parse_encrypted_refusals() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"success", ParseError::UnknownFormat),
            (b"", ParseError::UnknownFormat),
            (br#"{"MsgSignature":"s","TimeStamp":1,"Nonce":"n"}"#, ParseError::MissingField("Encrypt")),
            (br#"{"Encrypt":"e","TimeStamp":1,"Nonce":"n"}"#, ParseError::MissingField("MsgSignature")),
            (br#"{"Encrypt":"e","MsgSignature":"s","Nonce":"n"}"#, ParseError::MissingField("TimeStamp")),
            (b"<xml><Encrypt>e</Encrypt><MsgSignature>s</MsgSignature><TimeStamp>1</TimeStamp></xml>", ParseError::MissingField("Nonce")),
            (b"<!DOCTYPE x><xml/>", ParseError::Doctype),
            (b"<xml>\xfe</xml>", ParseError::NotUtf8),
        ];
        for (body, expected) in cases {
            assert_eq!(
                &parse_encrypted(body).unwrap_err(),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            parse_encrypted(b"<xml><Encrypt>e</Encrypt><MsgSignature>s</MsgSignature><TimeStamp>x</TimeStamp><Nonce>n</Nonce></xml>"),
            Err(ParseError::Malformed(Format::Xml, _))
        ));
        assert!(matches!(
            parse_encrypted(br#"{"Encrypt":"e","MsgSignature":"s","TimeStamp":1.5,"Nonce":"n"}"#),
            Err(ParseError::Malformed(Format::Json, _))
        ));
    }

    proptest! {
        #[test]
        fn text_reply_content_parses_back(content in "(.|]]>|]|>|<|&|\n)*") {
            let body = text("o1", "gh_1", 1, &content);
            let visible: String = content.chars().filter(|&c| xml::is_xml_char(c)).collect();
            prop_assert_eq!(element_text(&body, "Content"), Some(visible));
        }

        #[test]
        fn transfer_users_parse_back(to in ".{1,30}", from in ".{1,30}") {
            for format in [Format::Xml, Format::Json] {
                let body = transfer(format, &to, &from, 1);
                let visible = |s: &str| -> String { s.chars().filter(|&c| xml::is_xml_char(c)).collect() };
                let (to, from) = match format {
                    Format::Json => (to.clone(), from.clone()),
                    Format::Xml => (visible(&to), visible(&from)),
                };
                match super::super::message::parse_message(body.as_bytes()) {
                    Ok((_, m)) => prop_assert_eq!((m.to_user_name, m.from_user_name.into_string()), (to, from)),
                    // A name made only of characters XML cannot carry comes back empty.
                    Err(e) => prop_assert!(
                        e.to_string().starts_with("missing field") && (to.is_empty() || from.is_empty()),
                        "{}: {}", e, body
                    ),
                }
            }
        }

        #[test]
        fn parse_encrypted_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_encrypted(&body);
        }

        #[test]
        fn parse_encrypted_never_panics_on_xml_like_text(body in "[<>/!\\[\\]CDATxmlEncryptNoneTimStapg&;#0-9 ]{0,160}") {
            let _ = parse_encrypted(body.as_bytes());
        }
    }
}
