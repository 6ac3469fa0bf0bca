//! AES-256-CBC message encryption of safe and compatible mode (protocol doc §3).
//!
//! Owns the EncodingAESKey ([`AesKey`]), the strict decryption of a push's `Encrypt`, the
//! encryption of a reply, and `msg_signature`. Pure: the caller passes the random bytes, the
//! timestamp and the nonce in, so that everything here is reproducible against the vectors.
//!
//! The layout inside the ciphertext is `random16 ‖ u32_be(len) ‖ msg ‖ appid`, padded with
//! PKCS#7 over a block of **32** (not AES's 16), and the cipher itself runs without padding.

use std::fmt;

use aes::Aes256;
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::generic_array::GenericArray;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

use super::reply::EncryptedReply;
use super::signature;

/// The PKCS#7 block WeChat pads to (doc §3.2): the key size, not the AES block size.
const PAD_BLOCK: usize = 32;
/// `random16 ‖ u32_be(len)` before the message.
const HEADER_LEN: usize = 20;

/// Decodes `EncodingAESKey + "="`. The 43rd character usually carries non-zero trailing bits,
/// which the `STANDARD` engine refuses (doc §3.5), so this engine is for the key only.
const KEY_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

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
    /// Parses a 43-character EncodingAESKey as set in the WeChat console.
    pub fn parse(encoding_aes_key: &str) -> Result<Self, KeyError> {
        let chars = encoding_aes_key.chars().count();
        if chars != 43 {
            return Err(KeyError::Length(chars));
        }
        // ASCII only, so from here on 43 characters are 43 bytes.
        if !encoding_aes_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyError::Character);
        }
        let mut padded = [b'='; 44];
        padded[..43].copy_from_slice(encoding_aes_key.as_bytes());
        let mut key = [0u8; 32];
        match KEY_B64.decode_slice(padded, &mut key) {
            Ok(32) => Ok(AesKey { key }),
            // 43 alphanumerics plus "=" always decode to 32 bytes; kept as a refusal anyway.
            _ => Err(KeyError::Character),
        }
    }

    /// A key from its raw 32 bytes (tests, tools).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        AesKey { key }
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The CBC initialisation vector: the key's first 16 bytes (doc §3.1).
    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.key[..16]);
        iv
    }
}

/// Decrypts `encrypt` (base64 as received) and checks the trailing appid; returns the message.
///
/// Strict at every step (doc §3.4): canonical base64, a ciphertext of a positive multiple of 32
/// bytes, PKCS#7 padding of 1..=32 identical bytes, a declared length inside the plaintext, and
/// the exact appid.
pub fn decrypt(key: &AesKey, encrypt: &str, appid: &str) -> Result<Vec<u8>, CryptoError> {
    let mut buf = STANDARD.decode(encrypt).map_err(|_| CryptoError::Base64)?;
    if buf.is_empty() || buf.len() % PAD_BLOCK != 0 {
        return Err(CryptoError::Length);
    }
    let iv = key.iv();
    let plain_len = cbc::Decryptor::<Aes256>::new(&key.key.into(), &iv.into())
        .decrypt_padded_mut::<NoPadding>(&mut buf)
        .map_err(|_| CryptoError::Length)?
        .len();
    buf.truncate(plain_len);

    let body_len = unpad(&buf)?;
    let body = buf.get(..body_len).ok_or(CryptoError::Padding)?;
    let (msg_start, msg_end) = msg_bounds(body)?;
    if body.get(msg_end..) != Some(appid.as_bytes()) {
        return Err(CryptoError::AppId);
    }
    buf.truncate(msg_end);
    buf.drain(..msg_start);
    Ok(buf)
}

/// Checks the 32-byte PKCS#7 padding; returns the length without it.
fn unpad(plain: &[u8]) -> Result<usize, CryptoError> {
    let pad = usize::from(*plain.last().ok_or(CryptoError::Padding)?);
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(CryptoError::Padding);
    }
    let body_len = plain.len() - pad;
    let padding = plain.get(body_len..).ok_or(CryptoError::Padding)?;
    if padding.iter().any(|&b| usize::from(b) != pad) {
        return Err(CryptoError::Padding);
    }
    Ok(body_len)
}

/// Reads `random16 ‖ u32_be(len) ‖ msg ‖ …`; returns where msg starts and ends.
fn msg_bounds(body: &[u8]) -> Result<(usize, usize), CryptoError> {
    let len_bytes: [u8; 4] = body
        .get(16..HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(CryptoError::Layout)?;
    let msg_len =
        usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| CryptoError::Layout)?;
    let msg_end = HEADER_LEN
        .checked_add(msg_len)
        .filter(|&end| end <= body.len())
        .ok_or(CryptoError::Layout)?;
    Ok((HEADER_LEN, msg_end))
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
///
/// `msg` must be shorter than 4 GiB (its length is a u32 in the layout); request bodies and
/// replies are capped far below that.
pub fn encrypt(key: &AesKey, msg: &[u8], appid: &str, random: &[u8; 16]) -> String {
    let msg_len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    let unpadded = HEADER_LEN + msg.len() + appid.len();
    let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
    let mut buf = Vec::with_capacity(unpadded + pad);
    buf.extend_from_slice(random);
    buf.extend_from_slice(&msg_len.to_be_bytes());
    buf.extend_from_slice(msg);
    buf.extend_from_slice(appid.as_bytes());
    // `pad` is in 1..=32, so it fits a byte.
    buf.resize(unpadded + pad, pad as u8);

    let iv = key.iv();
    let mut cipher = cbc::Encryptor::<Aes256>::new(&key.key.into(), &iv.into());
    // The buffer is a multiple of 32, so every chunk is a whole 16-byte block.
    for block in buf.chunks_exact_mut(16) {
        cipher.encrypt_block_mut(GenericArray::from_mut_slice(block));
    }
    STANDARD.encode(&buf)
}

/// `msg_signature = sha1(sort([token, timestamp, nonce, encrypt]))` (doc §3.6), `encrypt` being
/// the base64 text exactly as sent or received.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    signature::sign(&[token, timestamp, nonce, encrypt])
}

/// Encrypts a reply and signs it: everything the encrypted envelope of doc §3.7 carries.
/// `timestamp` and `nonce` are the ones placed in the reply (the nonce may echo the push's).
pub fn seal(
    key: &AesKey,
    appid: &str,
    token: &str,
    msg: &[u8],
    timestamp: i64,
    nonce: &str,
    random: &[u8; 16],
) -> EncryptedReply {
    let encrypt = encrypt(key, msg, appid, random);
    let msg_signature = msg_signature(token, &timestamp.to_string(), nonce, &encrypt);
    EncryptedReply {
        encrypt,
        msg_signature,
        timestamp,
        nonce: nonce.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY_G: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wxb11529c136998cb6";

    fn key() -> AesKey {
        AesKey::parse(KEY_G).unwrap()
    }

    /// Encrypts an exact plaintext (no layout, no padding added): for building bad payloads.
    fn raw_encrypt(key: &AesKey, plain: &[u8]) -> String {
        assert_eq!(plain.len() % 16, 0);
        let mut buf = plain.to_vec();
        let mut cipher = cbc::Encryptor::<Aes256>::new(&key.key.into(), &key.iv().into());
        for block in buf.chunks_exact_mut(16) {
            cipher.encrypt_block_mut(GenericArray::from_mut_slice(block));
        }
        STANDARD.encode(&buf)
    }

    /// `random16 ‖ u32_be(declared) ‖ msg ‖ appid`, PKCS#7(32)-padded.
    fn layout(declared: u32, msg: &[u8], appid: &[u8]) -> Vec<u8> {
        let mut plain = b"0123456789abcdef".to_vec();
        plain.extend_from_slice(&declared.to_be_bytes());
        plain.extend_from_slice(msg);
        plain.extend_from_slice(appid);
        let pad = 32 - plain.len() % 32;
        plain.resize(plain.len() + pad, pad as u8);
        plain
    }

    #[test]
    fn key_with_trailing_bits_parses() {
        // §3.5: STANDARD refuses this key; the key engine must not.
        assert!(STANDARD.decode(format!("{KEY_G}=")).is_err());
        let key = key();
        assert_eq!(&key.bytes()[..4], &[0x69, 0xb7, 0x1d, 0x79]);
        assert_eq!(key.iv(), key.bytes()[..16]);
        let zeros = AesKey::parse(&"A".repeat(43)).unwrap();
        assert_eq!(zeros.bytes(), &[0u8; 32]);
        assert_eq!(zeros, AesKey::from_bytes([0; 32]));
    }

    #[test]
    fn key_refusals() {
        assert_eq!(AesKey::parse(""), Err(KeyError::Length(0)));
        assert_eq!(AesKey::parse(&KEY_G[..42]), Err(KeyError::Length(42)));
        assert_eq!(
            AesKey::parse(&format!("{KEY_G}A")),
            Err(KeyError::Length(44))
        );
        assert_eq!(
            AesKey::parse(&format!("{KEY_G}=")),
            Err(KeyError::Length(44))
        );
        for bad in ['+', '/', '=', ' ', '-'] {
            let k = format!("{}{bad}", &KEY_G[..42]);
            assert_eq!(AesKey::parse(&k), Err(KeyError::Character), "{k}");
        }
        // Non-ASCII: 43 bytes but 42 characters, and 43 characters but 44 bytes.
        let k = format!("{}é", &KEY_G[..41]);
        assert_eq!(k.len(), 43);
        assert_eq!(AesKey::parse(&k), Err(KeyError::Length(42)));
        let k = format!("{}é", &KEY_G[..42]);
        assert_eq!(AesKey::parse(&k), Err(KeyError::Character));
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", key()), "AesKey(***)");
    }

    #[test]
    fn round_trip_and_padding_of_a_full_block() {
        let key = key();
        // 20 + 12 + 0 = 32: a whole block of padding is added.
        let enc = encrypt(&key, b"exactly 12 b", "", &[7; 16]);
        assert_eq!(STANDARD.decode(&enc).unwrap().len(), 64);
        assert_eq!(decrypt(&key, &enc, "").unwrap(), b"exactly 12 b");
        let enc = encrypt(&key, b"", APPID, &[0; 16]);
        assert_eq!(decrypt(&key, &enc, APPID).unwrap(), b"");
    }

    #[test]
    fn refuses_bad_base64() {
        let key = key();
        for bad in [
            "not base64!",
            "QUJD",
            "QUJDRA",
            "QUJDRA=",
            " QUJDRA==",
            "QUJDRA==\n",
            "QUJDRQ==",
        ] {
            let err = decrypt(&key, bad, APPID).unwrap_err();
            assert!(
                matches!(err, CryptoError::Base64 | CryptoError::Length),
                "{bad}: {err:?}"
            );
        }
        assert_eq!(
            decrypt(&key, "not base64!", APPID),
            Err(CryptoError::Base64)
        );
        // Non-canonical trailing bits are refused for the payload (only the key allows them).
        let good = encrypt(&key, b"x", APPID, &[1; 16]);
        assert!(good.ends_with("=="));
        let mut chars: Vec<char> = good.chars().collect();
        let i = chars.len() - 3;
        chars[i] = if chars[i] == 'B' { 'C' } else { 'B' };
        let tweaked: String = chars.into_iter().collect();
        assert_ne!(tweaked, good);
        assert!(decrypt(&key, &tweaked, APPID).is_err());
    }

    #[test]
    fn refuses_lengths_that_are_not_a_positive_multiple_of_32() {
        let key = key();
        assert_eq!(decrypt(&key, "", APPID), Err(CryptoError::Length));
        for n in [1, 15, 16, 31, 33, 48, 80] {
            let enc = STANDARD.encode(vec![0u8; n]);
            assert_eq!(decrypt(&key, &enc, APPID), Err(CryptoError::Length), "{n}");
        }
    }

    #[test]
    fn refuses_bad_padding() {
        let key = key();
        let mut plain = layout(3, b"abc", APPID.as_bytes());
        let n = plain.len();
        // Padding byte 0.
        plain[n - 1] = 0;
        assert_eq!(
            decrypt(&key, &raw_encrypt(&key, &plain), APPID),
            Err(CryptoError::Padding)
        );
        // Padding byte above 32.
        plain[n - 1] = 33;
        assert_eq!(
            decrypt(&key, &raw_encrypt(&key, &plain), APPID),
            Err(CryptoError::Padding)
        );
        plain[n - 1] = 255;
        assert_eq!(
            decrypt(&key, &raw_encrypt(&key, &plain), APPID),
            Err(CryptoError::Padding)
        );
        // Inconsistent padding bytes.
        let mut plain = layout(3, b"abc", APPID.as_bytes());
        let pad = usize::from(plain[n - 1]);
        assert!(pad >= 2);
        plain[n - pad] ^= 1;
        assert_eq!(
            decrypt(&key, &raw_encrypt(&key, &plain), APPID),
            Err(CryptoError::Padding)
        );
        // A full block of 32 is fine; the 16-byte AES block size is not what counts.
        let plain = layout(12, b"exactly 12 b", b"");
        assert_eq!(plain.len(), 64);
        assert_eq!(
            decrypt(&key, &raw_encrypt(&key, &plain), "").unwrap(),
            b"exactly 12 b"
        );
    }

    #[test]
    fn refuses_a_declared_length_beyond_the_body() {
        let key = key();
        let body_len = APPID.len() + 3;
        for declared in [body_len as u32 + 1, 1 << 20, u32::MAX] {
            let plain = layout(declared, b"abc", APPID.as_bytes());
            assert_eq!(
                decrypt(&key, &raw_encrypt(&key, &plain), APPID),
                Err(CryptoError::Layout),
                "{declared}"
            );
        }
        // Declared length eating the appid: the appid check refuses it.
        let plain = layout(body_len as u32, b"abc", APPID.as_bytes());
        assert_eq!(
            decrypt(&key, &raw_encrypt(&key, &plain), APPID),
            Err(CryptoError::AppId)
        );
        // Fewer than 20 bytes before the padding.
        let mut plain = vec![0u8; 32];
        plain[19..].fill(13);
        assert_eq!(
            decrypt(&key, &raw_encrypt(&key, &plain), APPID),
            Err(CryptoError::Layout)
        );
    }

    #[test]
    fn refuses_the_wrong_appid() {
        let key = key();
        let enc = encrypt(&key, b"<xml/>", APPID, &[9; 16]);
        assert_eq!(
            decrypt(&key, &enc, "wx0000000000000000"),
            Err(CryptoError::AppId)
        );
        assert_eq!(
            decrypt(&key, &enc, "wxb11529c136998cb"),
            Err(CryptoError::AppId)
        );
        assert_eq!(decrypt(&key, &enc, ""), Err(CryptoError::AppId));
        // The wrong key: garbage, refused (padding, layout or appid, never a panic).
        let other = AesKey::parse(&"B".repeat(43)).unwrap();
        assert!(decrypt(&other, &enc, APPID).is_err());
    }

    #[test]
    fn any_key_reports_which_one_worked() {
        let current = key();
        let previous = AesKey::parse(&"B".repeat(43)).unwrap();
        let enc = encrypt(&previous, b"hi", APPID, &[3; 16]);
        let keys = [current.clone(), previous];
        assert_eq!(
            decrypt_with_any(&keys, &enc, APPID).unwrap(),
            (1, b"hi".to_vec())
        );
        let enc = encrypt(&current, b"hi", APPID, &[3; 16]);
        assert_eq!(
            decrypt_with_any(&keys, &enc, APPID).unwrap(),
            (0, b"hi".to_vec())
        );
        assert_eq!(decrypt_with_any(&[], &enc, APPID), Err(CryptoError::Base64));
    }

    #[test]
    fn seal_signs_what_it_encrypts() {
        let key = key();
        let r = seal(
            &key, APPID, "pamtest", b"reply", 1409304348, "xxxxxx", &[5; 16],
        );
        assert_eq!(r.encrypt, encrypt(&key, b"reply", APPID, &[5; 16]));
        assert_eq!(
            r.msg_signature,
            msg_signature("pamtest", "1409304348", "xxxxxx", &r.encrypt)
        );
        assert_eq!((r.timestamp, r.nonce.as_str()), (1409304348, "xxxxxx"));
    }

    proptest! {
        #[test]
        fn encrypt_then_decrypt_round_trips(
            msg in ".*",
            appid in ".*",
            random in any::<[u8; 16]>(),
            key in any::<[u8; 32]>(),
        ) {
            let key = AesKey::from_bytes(key);
            let enc = encrypt(&key, msg.as_bytes(), &appid, &random);
            prop_assert_eq!(decrypt(&key, &enc, &appid).unwrap(), msg.as_bytes());
        }

        #[test]
        fn decrypt_never_panics_on_any_text(s in ".*") {
            let _ = decrypt(&key(), &s, APPID);
        }

        #[test]
        fn decrypt_never_panics_on_any_ciphertext(blocks in 1usize..8, seed in any::<[u8; 32]>()) {
            // Valid base64 of the right length: exercises padding and layout checks.
            let bytes: Vec<u8> = (0..blocks * 32).map(|i| seed[i % 32].wrapping_add(i as u8)).collect();
            let _ = decrypt(&key(), &STANDARD.encode(bytes), APPID);
        }

        #[test]
        fn decrypt_never_panics_on_any_plaintext(plain in proptest::collection::vec(any::<u8>(), 1..6)
            .prop_flat_map(|v| proptest::collection::vec(any::<u8>(), v.len() * 32)))
        {
            // Any plaintext at all, including every padding byte and declared length.
            let key = key();
            let _ = decrypt(&key, &raw_encrypt(&key, &plain), APPID);
        }

        #[test]
        fn key_parse_never_panics(s in ".{0,50}") {
            let _ = AesKey::parse(&s);
        }

        #[test]
        fn every_alphanumeric_key_parses(s in "[A-Za-z0-9]{43}") {
            prop_assert!(AesKey::parse(&s).is_ok());
        }
    }
}
