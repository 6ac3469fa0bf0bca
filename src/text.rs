//! Text normalization shared by the rules and the FAQ matcher, so that both sides of every
//! comparison (the user's message and the operator's keywords) go through the same function.

use unicode_normalization::UnicodeNormalization;

/// Normalizes text for matching: Unicode NFKC (full-width letters, digits and punctuation become
/// half-width), lower case, surrounding blanks trimmed.
pub fn normalize(text: &str) -> String {
    let folded: String = text.nfkc().flat_map(char::to_lowercase).collect();
    folded.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn full_width_becomes_half_width_and_lower_case() {
        assert_eq!(normalize("  ＨＥＬＬＯ，世界１２３  "), "hello,世界123");
    }

    #[test]
    fn ideographic_space_is_trimmed() {
        assert_eq!(normalize("\u{3000}人工\u{3000}"), "人工");
    }

    #[test]
    fn empty_stays_empty() {
        assert_eq!(normalize(" \t\n"), "");
    }
}
