//! AES-256-CBC message encryption of safe and compatible mode (protocol doc §3).
//! STUB: to be implemented by the protocol work.

use std::fmt;

/// A decoded EncodingAESKey (32 bytes); the IV is its first 16 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct AesKey {
    key: [u8; 32],
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(***)")
    }
}

/// Why an EncodingAESKey was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must be exactly 43 characters of A-Z, a-z, 0-9 (got {0})")]
    Length(usize),
    #[error("must be exactly 43 characters of A-Z, a-z, 0-9 (bad character)")]
    Character,
}

/// Why an encrypted payload was refused (each maps to HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("payload is not valid base64")]
    Base64,
    #[error("ciphertext length is not a positive multiple of 32")]
    Length,
    #[error("bad PKCS#7 padding")]
    Padding,
    #[error("plaintext layout is invalid (message length)")]
    Layout,
    #[error("appid in the payload does not match")]
    AppId,
}

impl AesKey {
    pub fn parse(encoding_aes_key: &str) -> Result<Self, KeyError> {
        if encoding_aes_key.len() != 43 {
            return Err(KeyError::Length(encoding_aes_key.len()));
        }
        Err(KeyError::Character)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }
}

/// Decrypts `encrypt` (base64 as received) and checks the trailing appid; returns the message.
pub fn decrypt(_key: &AesKey, _encrypt: &str, _appid: &str) -> Result<Vec<u8>, CryptoError> {
    Err(CryptoError::Base64)
}

/// Tries each key in turn (current, then previous); returns the index of the key that worked.
pub fn decrypt_with_any(
    keys: &[AesKey],
    encrypt: &str,
    appid: &str,
) -> Result<(usize, Vec<u8>), CryptoError> {
    let mut last = CryptoError::Base64;
    for (i, key) in keys.iter().enumerate() {
        match decrypt(key, encrypt, appid) {
            Ok(msg) => return Ok((i, msg)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Encrypts `msg` with the given 16 random bytes; returns the base64 `Encrypt` text.
pub fn encrypt(_key: &AesKey, _msg: &[u8], _appid: &str, _random: &[u8; 16]) -> String {
    String::new()
}

/// Encrypts a reply and signs it: the envelope of an encrypted passive reply.
pub fn seal(
    key: &AesKey,
    appid: &str,
    token: &str,
    msg: &[u8],
    timestamp: i64,
    nonce: &str,
    random: &[u8; 16],
) -> super::reply::EncryptedReply {
    let encrypt = encrypt(key, msg, appid, random);
    let ts = timestamp.to_string();
    let msg_signature = super::signature::sign(&[token, &ts, nonce, &encrypt]);
    super::reply::EncryptedReply {
        encrypt,
        msg_signature,
        timestamp,
        nonce: nonce.to_string(),
    }
}
