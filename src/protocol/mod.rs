//! The WeChat push protocol, pure: no I/O, no actix, no clock (callers pass the time in).
//!
//! - [`signature`]: `sha1(sort(parts))` and its constant-time check.
//! - [`crypto`]: the AES-256-CBC envelope of safe and compatible mode (PKCS#7 with block 32).
//! - [`message`]: XML and JSON pushes parsed into one [`InboundMessage`].
//! - [`reply`]: `success`, `transfer_customer_service`, official-account passive text and the
//!   encrypted reply envelope, in the push's own format.
//! - `xml` and `json` (private): the streaming XML reader and the output hygiene of both formats.
//!
//! Reference: `shared/protocol/wechat-protocol.md`; its vectors V1–V11 are the tests.

pub mod crypto;
pub mod emit;
mod json;
pub mod message;
pub mod reply;
pub mod signature;
mod xml;

#[cfg(test)]
mod vectors;

pub use message::{Format, InboundMessage, MsgId, MsgKind};
