//! Passive replies in the push's own format (protocol doc §3.7, §5).
//!
//! Owns the bodies the webhook answers with: `success`, `transfer_customer_service`, an official
//! account's passive text, and the encrypted envelope around any of them; and reading the
//! envelope back, for `kefu send`. Encryption itself lives in [`super::crypto`].

use std::borrow::Cow;

use super::Format;
use super::json::{self, JsonInt, JsonText};
use super::message::{ParseError, json_error, prepare};
use super::xml;

/// The body that tells WeChat "received, nothing to transfer".
pub const SUCCESS: &str = "success";

/// `transfer_customer_service`: `to_user` is the user's openid, `from_user` the app's original id.
pub fn transfer(format: Format, to_user: &str, from_user: &str, create_time: i64) -> String {
    let mut out = String::with_capacity(192 + to_user.len() + from_user.len());
    match format {
        Format::Xml => {
            out.push_str("<xml>\n");
            xml::push_cdata_element(&mut out, "ToUserName", to_user);
            xml::push_cdata_element(&mut out, "FromUserName", from_user);
            xml::push_number_element(&mut out, "CreateTime", create_time);
            xml::push_cdata_element(&mut out, "MsgType", "transfer_customer_service");
            out.push_str("</xml>");
        }
        Format::Json => {
            out.push('{');
            json::push_str_member(&mut out, "ToUserName", to_user);
            json::push_str_member(&mut out, "FromUserName", from_user);
            json::push_number_member(&mut out, "CreateTime", create_time);
            json::push_str_member(&mut out, "MsgType", "transfer_customer_service");
            out.push('}');
        }
    }
    out
}

/// An official account's passive text reply (XML).
pub fn text(to_user: &str, from_user: &str, create_time: i64, content: &str) -> String {
    let mut out = String::with_capacity(192 + to_user.len() + from_user.len() + content.len());
    out.push_str("<xml>\n");
    xml::push_cdata_element(&mut out, "ToUserName", to_user);
    xml::push_cdata_element(&mut out, "FromUserName", from_user);
    xml::push_number_element(&mut out, "CreateTime", create_time);
    xml::push_cdata_element(&mut out, "MsgType", "text");
    xml::push_cdata_element(&mut out, "Content", content);
    out.push_str("</xml>");
    out
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
    let mut out = String::with_capacity(
        160 + reply.encrypt.len() + reply.msg_signature.len() + reply.nonce.len(),
    );
    match format {
        Format::Xml => {
            out.push_str("<xml>\n");
            xml::push_cdata_element(&mut out, "Encrypt", &reply.encrypt);
            xml::push_cdata_element(&mut out, "MsgSignature", &reply.msg_signature);
            xml::push_number_element(&mut out, "TimeStamp", reply.timestamp);
            xml::push_cdata_element(&mut out, "Nonce", &reply.nonce);
            out.push_str("</xml>");
        }
        Format::Json => {
            out.push('{');
            json::push_str_member(&mut out, "Encrypt", &reply.encrypt);
            json::push_str_member(&mut out, "MsgSignature", &reply.msg_signature);
            json::push_number_member(&mut out, "TimeStamp", reply.timestamp);
            json::push_str_member(&mut out, "Nonce", &reply.nonce);
            out.push('}');
        }
    }
    out
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
