//! Text normalization shared by the rules and the FAQ matcher, so that both sides of every
//! comparison (the user's message and the operator's keywords) go through the same function.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// Normalizes text for matching: Unicode NFKC (full-width letters, digits and punctuation become
/// half-width), lower case, surrounding blanks trimmed.
pub fn normalize(text: &str) -> String {
    // Most messages are already in NFKC (a quick check that needs no decomposition says so):
    // they skip the normalizer, which costs more than everything else here. Most of those are
    // ASCII and common Chinese characters only, which need neither the check nor a case table.
    let folded: String = if text.chars().all(is_plain) {
        let mut plain = text.to_owned();
        plain.make_ascii_lowercase();
        plain
    } else if is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        text.chars().flat_map(char::to_lowercase).collect()
    } else {
        text.nfkc().flat_map(char::to_lowercase).collect()
    };
    match folded.trim() {
        trimmed if trimmed.len() == folded.len() => folded,
        trimmed => trimmed.to_string(),
    }
}

/// A character that NFKC leaves as it is whatever surrounds it (no decomposition, combining
/// class 0, and no character composes with it) and whose lower case is itself or its ASCII
/// lower case: ASCII, the CJK Unified Ideographs, and the ideographic comma and full stop.
fn is_plain(c: char) -> bool {
    c.is_ascii() || matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3001}' | '\u{3002}')
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use unicode_normalization::UnicodeNormalization;

    #[test]
    fn full_width_becomes_half_width_and_lower_case() {
        assert_eq!(normalize("  ＨＥＬＬＯ，世界１２３  "), "hello,世界123");
    }

    #[test]
    fn ideographic_space_is_trimmed() {
        assert_eq!(normalize("\u{3000}人工\u{3000}"), "人工");
    }

    proptest::proptest! {
        /// The quick-check shortcut changes nothing: the same result as always normalizing.
        #[test]
        fn the_shortcut_agrees_with_full_normalization(text in "\\PC*|[ａ-ｚＡ-Ｚ０-９ Ⅻ㍿ﬁ\u{3000}\u{301}e]*|[a-zA-Z0-9 ,.?\t\u{4E00}-\u{9FFF}\u{3001}\u{3002}\u{FF0C}\u{300C}\u{F900}-\u{FAFF}\u{301}]*") {
            let full: String = text.nfkc().flat_map(char::to_lowercase).collect();
            proptest::prop_assert_eq!(normalize(&text), full.trim());
        }
    }

    #[test]
    fn empty_stays_empty() {
        assert_eq!(normalize(" \t\n"), "");
    }
}
