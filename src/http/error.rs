//! The one error type of the webhook: every way a request ends without a normal answer, and the
//! status each maps to (SPEC §3, §11). The response body says little; the reason is logged and
//! counted by the handler.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::protocol::crypto::CryptoError;
use crate::protocol::message::ParseError;
use crate::store::StoreError;

/// Why a push or verification got no normal answer. Refusals (4xx) are the client's doing and
/// run in the order of their groups: app, method, parameters, timestamp window, signature, body.
/// The 503s are ours: WeChat retries them.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
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
    #[error("request not received within request_timeout_secs")]
    Timeout,
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
    /// The store failed at `op` (claim, session, commit): nothing was recorded.
    #[error("store {op} failed: {source}")]
    Store {
        op: &'static str,
        #[source]
        source: StoreError,
    },
    /// The commit did not become durable within the answer budget.
    #[error("store commit missed the answer deadline")]
    StoreTooSlow,
    /// A first attempt of the same push is still being handled (WeChat retries again).
    #[error("first attempt of this push still in flight")]
    InFlight,
}

impl WebhookError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownApp => "unknown_app",
            Self::Method => "method",
            Self::MissingParam(_) => "missing_param",
            Self::BadTimestamp => "bad_timestamp",
            Self::StaleTimestamp => "stale_timestamp",
            Self::BadSignature => "bad_signature",
            Self::BadMsgSignature => "bad_msg_signature",
            Self::PlaintextRefused => "plaintext_refused",
            Self::EncryptedRefused => "encrypted_refused",
            Self::Timeout => "timeout",
            Self::TooLarge => "too_large",
            Self::BodyRead => "body_read",
            Self::Parse(_) => "bad_body",
            Self::NoEncrypt => "no_encrypt",
            Self::Decrypt(_) | Self::DecryptedNotUtf8 => "decrypt",
            Self::Store { .. } | Self::StoreTooSlow => "store",
            Self::InFlight => "in_flight",
        }
    }

    /// Ours rather than the client's: logged as an error, not counted as a refusal.
    pub fn is_ours(&self) -> bool {
        self.status_code().is_server_error()
    }
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnknownApp => StatusCode::NOT_FOUND,
            Self::Method => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingParam(_) | Self::BadTimestamp => StatusCode::BAD_REQUEST,
            Self::StaleTimestamp
            | Self::BadSignature
            | Self::BadMsgSignature
            | Self::PlaintextRefused
            | Self::EncryptedRefused => StatusCode::FORBIDDEN,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead
            | Self::Parse(_)
            | Self::NoEncrypt
            | Self::Decrypt(_)
            | Self::DecryptedNotUtf8 => StatusCode::BAD_REQUEST,
            Self::Store { .. } | Self::StoreTooSlow | Self::InFlight => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let body = match self {
            Self::Store { .. } => "store unavailable",
            Self::StoreTooSlow => "store too slow",
            Self::InFlight => "first attempt still in flight",
            _ => status.canonical_reason().unwrap_or("refused"),
        };
        let mut response = HttpResponse::build(status);
        response.content_type("text/plain; charset=utf-8");
        if matches!(self, Self::Timeout) {
            // A client this slow does not keep its connection.
            response.force_close();
        }
        response.body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_spec() {
        let cases: [(WebhookError, u16); 7] = [
            (WebhookError::UnknownApp, 404),
            (WebhookError::Method, 405),
            (WebhookError::MissingParam("nonce"), 400),
            (WebhookError::BadSignature, 403),
            (WebhookError::Timeout, 408),
            (WebhookError::TooLarge, 413),
            (WebhookError::InFlight, 503),
        ];
        for (error, status) in cases {
            assert_eq!(error.status_code().as_u16(), status, "{error}");
        }
        assert!(WebhookError::StoreTooSlow.is_ours());
        assert!(!WebhookError::Timeout.is_ours());
    }
}
