//! `signature = hex(sha1(concat(sort(parts))))`, compared in constant time (protocol doc §1, §3.6).

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Lower-case hex SHA-1 of the byte-wise sorted, concatenated parts.
pub fn sign(parts: &[&str]) -> String {
    hex::encode(digest(parts))
}

/// SHA-1 of the byte-wise sorted, concatenated parts (WeChat signs at most four).
fn digest(parts: &[&str]) -> [u8; 20] {
    let mut sorted: [&str; 4] = [""; 4];
    let mut rest: Vec<&str> = Vec::new();
    let sorted: &mut [&str] = match sorted.get_mut(..parts.len()) {
        Some(slots) => {
            slots.copy_from_slice(parts);
            slots
        }
        None => {
            rest.extend_from_slice(parts);
            &mut rest
        }
    };
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted.iter() {
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// Whether `signature` (as WeChat sent it) matches the parts, in constant time.
pub fn verify(signature: &str, parts: &[&str]) -> bool {
    let mut expected = [0u8; 40];
    if hex::encode_to_slice(digest(parts), &mut expected).is_err() {
        return false;
    }
    expected.ct_eq(signature.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (token, timestamp, nonce, signature): V1, V2, V3's URL signature, V5 and V6 (derived),
    /// V10's URL signature, V11.
    const PLAIN: &[(&str, &str, &str, &str)] = &[
        (
            "AAAAA",
            "1714036504",
            "1514711492",
            "f464b24fc39322e44b38aa78f5edd27bd1441696",
        ),
        (
            "AAAAA",
            "1714037059",
            "486452656",
            "899cf89e464efb63f54ddac96b0a0a235f53aa78",
        ),
        (
            "AAAAA",
            "1714112445",
            "415670741",
            "6c5c811b55cc85e0e1b54100749188c20beb3f5d",
        ),
        (
            "spamtest",
            "1409735669",
            "1320562132",
            "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a",
        ),
        (
            "pamtest",
            "1409304348",
            "xxxxxx",
            "76480565cbe296026c53aaacd1ad523a1ddba24f",
        ),
        (
            "AAAAA",
            "1715943329",
            "1590219412",
            "cc0c594499c1634947d5b502f158ee518947db27",
        ),
        (
            "test",
            "1410685589",
            "test",
            "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff",
        ),
    ];

    #[test]
    fn plain_signature_vectors() {
        for &(token, ts, nonce, expected) in PLAIN {
            assert_eq!(sign(&[token, ts, nonce]), expected, "{token} {ts} {nonce}");
            assert!(verify(expected, &[token, ts, nonce]));
            // The order of the parts does not matter: they are sorted.
            assert!(verify(expected, &[nonce, token, ts]));
        }
    }

    #[test]
    fn more_than_four_parts_are_sorted_too() {
        let mut hasher = Sha1::new();
        hasher.update(b"abcde");
        let expected = hex::encode(hasher.finalize());
        assert_eq!(sign(&["e", "c", "a", "d", "b"]), expected);
        assert!(verify(&expected, &["b", "a", "e", "d", "c"]));
        assert!(!verify(&expected[..39], &["b", "a", "e", "d", "c"]));
    }

    #[test]
    fn v1_sorted_concatenation() {
        // The doc's worked example: sorted ["1514711492","1714036504","AAAAA"].
        let mut hasher = Sha1::new();
        hasher.update(b"15147114921714036504AAAAA");
        assert_eq!(
            hex::encode(hasher.finalize()),
            sign(&["AAAAA", "1714036504", "1514711492"])
        );
    }

    #[test]
    fn v11_refuses_a_wrong_signature() {
        let parts = ["test", "1410685589", "test"];
        assert!(!verify("f21891de399b4e33a1a93c9a7b8a8fffb5a443fe", &parts));
        assert!(!verify("F21891DE399B4E33A1A93C9A7B8A8FFFB5A443FF", &parts));
        assert!(!verify("", &parts));
        assert!(!verify("f21891de399b4e33a1a93c9a7b8a8fffb5a443ff0", &parts));
    }
}
