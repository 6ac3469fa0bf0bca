//! Why a request to the webhook was refused, and the status each reason maps to (SPEC §3).
//! The response body says little; the reason is logged and counted.

use actix_web::http::StatusCode;

use crate::protocol::crypto::CryptoError;
use crate::protocol::message::ParseError;

/// A refused request. Checks run in the order of the variants' groups: app, method,
/// parameters, timestamp window, signature, body.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("unknown app")]
    UnknownApp,
    #[error("method not allowed")]
    Method,
    #[error("missing query parameter {0}")]
    MissingParam(&'static str),
    #[error("timestamp is not a number")]
    BadTimestamp,
    #[error("timestamp outside the allowed skew")]
    StaleTimestamp,
    #[error("wrong signature")]
    BadSignature,
    #[error("wrong msg_signature")]
    BadMsgSignature,
    #[error("plaintext push to an app in safe mode")]
    PlaintextRefused,
    #[error("encrypted push to an app in plaintext mode")]
    EncryptedRefused,
    #[error("body larger than max_body_bytes")]
    TooLarge,
    #[error("body could not be read")]
    BodyRead,
    #[error("bad body: {0}")]
    Parse(#[from] ParseError),
    #[error("encrypted push has no Encrypt field")]
    NoEncrypt,
    #[error("cannot decrypt: {0}")]
    Decrypt(#[from] CryptoError),
    #[error("decrypted payload is not UTF-8")]
    DecryptedNotUtf8,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::UnknownApp => StatusCode::NOT_FOUND,
            Refusal::Method => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::MissingParam(_) | Refusal::BadTimestamp => StatusCode::BAD_REQUEST,
            Refusal::StaleTimestamp
            | Refusal::BadSignature
            | Refusal::BadMsgSignature
            | Refusal::PlaintextRefused
            | Refusal::EncryptedRefused => StatusCode::FORBIDDEN,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyRead
            | Refusal::Parse(_)
            | Refusal::NoEncrypt
            | Refusal::Decrypt(_)
            | Refusal::DecryptedNotUtf8 => StatusCode::BAD_REQUEST,
        }
    }

    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::UnknownApp => "unknown_app",
            Refusal::Method => "method",
            Refusal::MissingParam(_) => "missing_param",
            Refusal::BadTimestamp => "bad_timestamp",
            Refusal::StaleTimestamp => "stale_timestamp",
            Refusal::BadSignature => "bad_signature",
            Refusal::BadMsgSignature => "bad_msg_signature",
            Refusal::PlaintextRefused => "plaintext_refused",
            Refusal::EncryptedRefused => "encrypted_refused",
            Refusal::TooLarge => "too_large",
            Refusal::BodyRead => "body_read",
            Refusal::Parse(_) => "bad_body",
            Refusal::NoEncrypt => "no_encrypt",
            Refusal::Decrypt(_) => "decrypt",
            Refusal::DecryptedNotUtf8 => "decrypt",
        }
    }
}
