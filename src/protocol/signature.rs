//! `signature = hex(sha1(concat(sort(parts))))`, compared in constant time (protocol doc §1, §3.6).

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Lower-case hex SHA-1 of the byte-wise sorted, concatenated parts.
pub fn sign(parts: &[&str]) -> String {
    let mut sorted: Vec<&str> = parts.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Whether `signature` (as WeChat sent it) matches the parts, in constant time.
pub fn verify(signature: &str, parts: &[&str]) -> bool {
    let expected = sign(parts);
    expected.as_bytes().ct_eq(signature.as_bytes()).into()
}
