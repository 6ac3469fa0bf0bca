//! Passive replies in the push's own format (protocol doc §3.7, §5).
//! STUB: to be implemented by the protocol work.

use super::Format;
use super::message::ParseError;

/// The body that tells WeChat "received, nothing to transfer".
pub const SUCCESS: &str = "success";

/// `transfer_customer_service`: `to_user` is the user's openid, `from_user` the app's original id.
pub fn transfer(_format: Format, _to_user: &str, _from_user: &str, _create_time: i64) -> String {
    String::new()
}

/// An official account's passive text reply (XML).
pub fn text(_to_user: &str, _from_user: &str, _create_time: i64, _content: &str) -> String {
    String::new()
}

/// The encrypted reply envelope (`Encrypt`, `MsgSignature`, `TimeStamp`, `Nonce`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedReply {
    pub encrypt: String,
    pub msg_signature: String,
    pub timestamp: i64,
    pub nonce: String,
}

/// Renders the envelope in the given format.
pub fn encrypted(_format: Format, _reply: &EncryptedReply) -> String {
    String::new()
}

/// Parses an encrypted reply (what `kefu send` receives back).
pub fn parse_encrypted(_body: &[u8]) -> Result<EncryptedReply, ParseError> {
    Err(ParseError::UnknownFormat)
}
