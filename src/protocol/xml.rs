//! The XML both ways, for WeChat's flat `<xml><Field>…</Field>…</xml>` documents.
//!
//! In: [`scan`] streams the body through quick-xml (no DOM) and fills one slot per known child
//! of the root with its text, CDATA and entity-unescaped text alike, borrowed from the body when
//! it can be. Out: [`push_cdata`] and friends write strings the way doc §5.4 asks (CDATA, `]]>`
//! split, XML-1.0-illegal characters dropped). Knows nothing of which fields a message has.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::Format;
use super::message::ParseError;

/// The text of one child of the root, if it was present.
pub(super) type Slot<'a> = Option<Cow<'a, str>>;

/// Streams `xml` and, for each child of the root that `field` maps to a slot index, stores its
/// text there (a repeated element: the last one wins). Elements nested deeper (`<TransInfo>`,
/// `<ScanCodeInfo>`) and unknown elements are skipped. Refuses a DOCTYPE, a document that is not
/// well-formed, and text or a second element outside the root.
pub(super) fn scan<'a>(
    xml: &'a str,
    field: impl Fn(&[u8]) -> Option<usize>,
    slots: &mut [Slot<'a>],
) -> Result<(), ParseError> {
    if scan_plain(xml, &field, slots) {
        return Ok(());
    }
    slots.iter_mut().for_each(|slot| *slot = None);
    scan_events(xml, field, slots)
}

/// The shape WeChat sends, read without an XML parser: a root holding only children whose
/// content is one CDATA section or text without markup or entities, blanks between them, and
/// nothing around the root but blanks. Fills the slots as [`scan_events`] would and returns
/// true; returns false, slots partly filled, at the first byte of anything else (a declaration,
/// a comment, an entity, an empty or nested element, blanks around a CDATA section, an error),
/// which the full parser then reads or refuses.
fn scan_plain<'a>(
    xml: &'a str,
    field: &impl Fn(&[u8]) -> Option<usize>,
    slots: &mut [Slot<'a>],
) -> bool {
    /// `<name>` at `at`: the name and the index after `>`.
    fn open_tag(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let rest = b.get(at..)?.strip_prefix(b"<")?;
        let len = rest
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))?;
        (len > 0 && rest.get(len) == Some(&b'>')).then(|| (&rest[..len], at + len + 2))
    }
    fn skip_blanks(b: &[u8], mut at: usize) -> usize {
        while b
            .get(at)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        {
            at += 1;
        }
        at
    }
    let b = xml.as_bytes();
    let Some((root, mut at)) = open_tag(b, skip_blanks(b, 0)) else {
        return false;
    };
    loop {
        at = skip_blanks(b, at);
        let Some(rest) = b.get(at..) else {
            return false;
        };
        if let Some(after) = rest.strip_prefix(b"</") {
            // The root's end, then only blanks.
            let Some(after) = after.strip_prefix(root) else {
                return false;
            };
            return after.first() == Some(&b'>') && skip_blanks(after, 1) == after.len();
        }
        let Some((name, start)) = open_tag(b, at) else {
            return false;
        };
        let content = &b[start..];
        let (value, end) = if let Some(cdata) = content.strip_prefix(b"<![CDATA[") {
            let Some(len) = find_cdata_end(cdata) else {
                return false;
            };
            let begin = start + "<![CDATA[".len();
            (begin..begin + len, begin + len + 3)
        } else {
            let Some(len) = memchr::memchr2(b'<', b'&', content) else {
                return false;
            };
            (start..start + len, start + len)
        };
        // Only the element's own end tag may follow.
        let Some(close) = b.get(end..).and_then(|r| r.strip_prefix(b"</")) else {
            return false;
        };
        let Some(close) = close.strip_prefix(name) else {
            return false;
        };
        if close.first() != Some(&b'>') {
            return false;
        }
        // Byte offsets found at ASCII bytes, so on character boundaries of `xml`.
        let Some(text) = xml.get(value) else {
            return false;
        };
        if let Some(slot) = field(name).and_then(|i| slots.get_mut(i)) {
            *slot = Some(Cow::Borrowed(text));
        }
        at = end + 2 + name.len() + 1;
    }
}

/// Where `]]>` starts in `b`: the `]`s are looked for with memchr, which is faster than
/// comparing every three-byte window.
fn find_cdata_end(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = from + memchr::memchr(b']', b.get(from..)?)?;
        if b.get(at..at + 3) == Some(b"]]>".as_slice()) {
            return Some(at);
        }
        from = at + 1;
    }
}

/// The full reader: quick-xml's events, for every document [`scan_plain`] does not take.
fn scan_events<'a>(
    xml: &'a str,
    field: impl Fn(&[u8]) -> Option<usize>,
    slots: &mut [Slot<'a>],
) -> Result<(), ParseError> {
    let mut reader = Reader::from_str(xml);
    // Depth of the element being read: 1 inside the root, 2 inside one of its children.
    let mut depth = 0usize;
    let mut seen_root = false;
    // The slot of the child of the root being read, if it is a known one.
    let mut current: Option<usize> = None;
    // Blanks around a CDATA section are layout, not value (WeChat's card documentation writes
    // `<MsgType> <![CDATA[event]]> </MsgType>`): blank text is held here until it is known
    // whether it sits between content (kept) or around a CDATA section (dropped).
    let mut blanks: Option<Cow<'a, str>> = None;
    let mut had_cdata = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| malformed(format!("{e} (at byte {})", reader.error_position())))?;
        match event {
            Event::DocType(_) => return Err(ParseError::Doctype),
            Event::Start(start) => {
                match depth {
                    0 => open_root(&mut seen_root)?,
                    1 => {
                        current = field(start.name().as_ref());
                        set(slots, current, Cow::Borrowed(""));
                        blanks = None;
                        had_cdata = false;
                    }
                    _ => {}
                }
                depth += 1;
            }
            Event::Empty(start) => match depth {
                0 => open_root(&mut seen_root)?,
                1 => set(slots, field(start.name().as_ref()), Cow::Borrowed("")),
                _ => {}
            },
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth <= 1 {
                    // Trailing blanks of an element without CDATA are its value, as before.
                    if let Some(held) = blanks.take()
                        && !had_cdata
                    {
                        append(slots, current, held);
                    }
                    current = None;
                }
            }
            Event::Text(text) => {
                if depth == 2 && current.is_some() {
                    let piece = text.unescape().map_err(|e| malformed(e.to_string()))?;
                    if piece.chars().all(char::is_whitespace) {
                        match &mut blanks {
                            Some(held) => held.to_mut().push_str(&piece),
                            None => blanks = Some(piece),
                        }
                    } else {
                        if let Some(held) = blanks.take() {
                            append(slots, current, held);
                        }
                        append(slots, current, piece);
                    }
                } else if depth == 0 && !text.iter().all(u8::is_ascii_whitespace) {
                    return Err(malformed("text outside the root element".into()));
                }
            }
            Event::CData(cdata) => {
                if depth == 0 {
                    return Err(malformed("CDATA outside the root element".into()));
                }
                if depth == 2 && current.is_some() {
                    let piece = cdata.decode().map_err(|e| malformed(e.to_string()))?;
                    // Blanks before the first CDATA section are layout; blanks between pieces
                    // of content stay.
                    if let Some(held) = blanks.take()
                        && slot_has_text(slots, current)
                    {
                        append(slots, current, held);
                    }
                    append(slots, current, piece);
                    had_cdata = true;
                }
            }
            Event::Eof => break,
            // The XML declaration, comments and processing instructions carry nothing for us.
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !seen_root {
        return Err(malformed("no root element".into()));
    }
    if depth != 0 {
        return Err(malformed(
            "unexpected end of input inside an element".into(),
        ));
    }
    Ok(())
}

fn malformed(reason: String) -> ParseError {
    ParseError::Malformed(Format::Xml, reason)
}

fn open_root(seen_root: &mut bool) -> Result<(), ParseError> {
    if *seen_root {
        return Err(malformed("more than one root element".into()));
    }
    *seen_root = true;
    Ok(())
}

fn set<'a>(slots: &mut [Slot<'a>], index: Option<usize>, value: Cow<'a, str>) {
    if let Some(slot) = index.and_then(|i| slots.get_mut(i)) {
        *slot = Some(value);
    }
}

fn slot_has_text(slots: &[Slot<'_>], index: Option<usize>) -> bool {
    index
        .and_then(|i| slots.get(i))
        .is_some_and(|slot| slot.as_ref().is_some_and(|t| !t.is_empty()))
}

/// Adds a piece of text to a slot; stays borrowed while the element has a single piece.
fn append<'a>(slots: &mut [Slot<'a>], index: Option<usize>, piece: Cow<'a, str>) {
    let Some(slot) = index.and_then(|i| slots.get_mut(i)) else {
        return;
    };
    match slot {
        Some(text) if !text.is_empty() => text.to_mut().push_str(&piece),
        _ => *slot = Some(piece),
    }
}

/// Whether XML 1.0 allows the character (production `Char`); the rest is dropped on output.
pub(super) fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// Writes `s` as a CDATA section: illegal characters dropped, each `]]>` split across two
/// sections (`]]]]><![CDATA[>`) so that no user text can close the section early.
pub(super) fn push_cdata(out: &mut String, s: &str) {
    out.push_str("<![CDATA[");
    // The common case, an ordinary string, is copied whole.
    if is_plain_cdata(s) {
        out.push_str(s);
        out.push_str("]]>");
        return;
    }
    for c in s.chars().filter(|&c| is_xml_char(c)) {
        if c == '>' && out.ends_with("]]") {
            out.push_str("]]><![CDATA[>");
        } else {
            out.push(c);
        }
    }
    out.push_str("]]>");
}

/// Whether `s` goes into a CDATA section as it is: every character legal in XML 1.0 and no
/// `]]>`. One pass over the bytes: in UTF-8 the illegal characters of a `&str` are the C0
/// controls but tab, line feed and carriage return (single bytes), and U+FFFE and U+FFFF
/// (`EF BF BE`, `EF BF BF`).
fn is_plain_cdata(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\t' | b'\n' | b'\r' => true,
        0..0x20 => false,
        b']' => !b[i..].starts_with(b"]]>"),
        0xEF => !matches!(b.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])),
        _ => true,
    })
}

/// Writes `<name><![CDATA[value]]></name>` and a newline.
pub(super) fn push_cdata_element(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    push_cdata(out, value);
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

/// Writes `<name>value</name>` and a newline, for numbers (nothing to escape).
pub(super) fn push_number_element(out: &mut String, name: &str, value: impl std::fmt::Display) {
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = writeln!(out, "<{name}>{value}</{name}>");
}

/// Parses the text of a numeric element; surrounding blanks are tolerated, absence is `None`.
pub(super) fn parse_int<T: std::str::FromStr>(
    text: Option<&str>,
    name: &'static str,
) -> Result<Option<T>, ParseError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| malformed(format!("{name} is not an integer"))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cdata_end_is_the_first_full_terminator() {
        for (text, at) in [
            ("]]>", Some(0)),
            ("a]]>b]]>", Some(1)),
            ("]]]>", Some(1)),
            ("]>]]]]>", Some(4)),
            ("]]", None),
            ("] ]>", None),
            ("", None),
            ("文]]>", Some(3)),
        ] {
            assert_eq!(super::find_cdata_end(text.as_bytes()), at, "{text:?}");
        }
    }

    use super::*;

    fn scan_two(xml: &str) -> Result<(Option<String>, Option<String>), ParseError> {
        let mut slots = [None, None];
        scan(
            xml,
            |name| match name {
                b"A" => Some(0),
                b"B" => Some(1),
                _ => None,
            },
            &mut slots,
        )?;
        let [a, b] = slots;
        Ok((a.map(Cow::into_owned), b.map(Cow::into_owned)))
    }

    /// The slots as owned strings.
    type Owned = Vec<Option<String>>;

    /// Both readers' slots for `xml`: the fast one's only when it takes the document.
    fn both(xml: &str) -> (Option<Owned>, Result<Owned, ParseError>) {
        let field = |name: &[u8]| match name {
            b"A" => Some(0),
            b"B" => Some(1),
            b"Content" => Some(2),
            _ => None,
        };
        let owned = |slots: [Slot<'_>; 3]| slots.map(|s| s.map(Cow::into_owned)).to_vec();
        let mut fast = [None, None, None];
        let fast = scan_plain(xml, &field, &mut fast).then(|| owned(fast));
        let mut full = [None, None, None];
        let full = scan_events(xml, field, &mut full).map(|()| owned(full));
        (fast, full)
    }

    #[test]
    fn the_fast_reader_takes_what_wechat_sends() {
        let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\n<CreateTime>1764230400</CreateTime>\
                   <Content><![CDATA[请问 a<b]]></Content><A></A><B>two words</B></xml>\n";
        let (fast, full) = both(xml);
        assert_eq!(
            fast,
            Some(vec![
                Some("".into()),
                Some("two words".into()),
                Some("请问 a<b".into())
            ])
        );
        assert_eq!(fast, full.ok());
    }

    /// Documents near WeChat's shape: mostly what the fast reader takes, with every kind of
    /// departure it must leave to the full reader mixed in.
    fn near_wechat() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let lead = prop_oneof![
            12 => "[ \n]{0,2}",
            1 => Just("<?xml version=\"1.0\"?>".to_string()),
            1 => Just("<!-- c -->".to_string()),
        ];
        let root = prop_oneof![12 => Just("xml"), 2 => Just("x_1"), 1 => Just("")];
        let name = prop_oneof![
            8 => Just("A"), 8 => Just("B"), 8 => Just("Content"), 4 => Just("Other"),
            1 => Just("A b=\"1\""), 1 => Just("A/"), 1 => Just("内容"), 1 => Just("1a"),
            1 => Just("_x"), 1 => Just("a-b"),
        ];
        let content = prop_oneof![
            12 => "[a-z \r\n\t你>;\\]]{0,6}",
            12 => "<!\\[CDATA\\[[a-z \r\\]>你<&]{0,6}\\]\\]>",
            1 => Just("&amp;x".to_string()),
            1 => Just(" <![CDATA[y]]> ".to_string()),
            1 => Just("<![CDATA[a]]><![CDATA[b]]>".to_string()),
            1 => Just("<C>1</C>".to_string()),
            1 => "[a-z<&]{0,3}",
        ];
        let end_suffix = prop_oneof![24 => Just(""), 1 => Just("x"), 1 => Just(" ")];
        let child = (name, content, end_suffix, "[ \n]{0,2}");
        let tail = prop_oneof![
            12 => "[ \n]{0,2}",
            1 => Just("junk".to_string()),
            1 => Just("<!-- c -->".to_string()),
            1 => Just("</xml>".to_string()),
        ];
        (lead, root, proptest::collection::vec(child, 0..5), tail).prop_map(
            |(lead, root, children, tail)| {
                let mut xml = format!("{lead}<{root}>");
                for (name, content, suffix, blank) in children {
                    let end = name.split([' ', '/']).next().unwrap_or("");
                    xml.push_str(&format!("<{name}>{content}</{end}{suffix}>{blank}"));
                }
                xml.push_str(&format!("</{root}>{tail}"));
                xml
            },
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        /// Whatever the fast reader takes, it reads as the full reader does.
        #[test]
        fn the_fast_reader_agrees_with_the_full_one(xml in near_wechat()) {
            let (fast, full) = both(&xml);
            if let Some(fast) = fast {
                proptest::prop_assert_eq!(Some(fast), full.ok(), "{}", xml);
            }
        }
    }

    /// The property above is not empty: the generator makes documents the fast reader takes,
    /// with several fields, and ones it leaves.
    #[test]
    fn the_generator_reaches_both_readers() {
        use proptest::strategy::{Strategy, ValueTree};
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut taken, mut left) = (0, 0);
        for _ in 0..2000 {
            let Ok(tree) = near_wechat().new_tree(&mut runner) else {
                continue;
            };
            let xml = tree.current();
            match both(&xml).0 {
                Some(slots) if slots.iter().flatten().count() >= 2 => taken += 1,
                Some(_) => {}
                None => left += 1,
            }
        }
        assert!(taken > 100 && left > 100, "taken {taken}, left {left}");
    }

    #[test]
    fn reads_cdata_plain_text_and_entities() {
        let got = scan_two("<xml><A><![CDATA[x<y]]></A><B>a &amp; b &#x4F60;</B></xml>").unwrap();
        assert_eq!(got, (Some("x<y".into()), Some("a & b 你".into())));
    }

    #[test]
    fn blanks_around_cdata_are_layout_not_value() {
        let got =
            scan_two("<xml><A> <![CDATA[event]]> </A><B>\n  <![CDATA[ x ]]>\n</B></xml>").unwrap();
        assert_eq!(got, (Some("event".into()), Some(" x ".into())));
        let got = scan_two("<xml><A>a <![CDATA[b]]></A><B>  </B></xml>").unwrap();
        assert_eq!(got, (Some("a b".into()), Some("  ".into())));
    }

    #[test]
    fn joins_split_cdata_sections() {
        let got = scan_two("<xml><A><![CDATA[a]]]]><![CDATA[>b]]></A></xml>").unwrap();
        assert_eq!(got.0.as_deref(), Some("a]]>b"));
    }

    #[test]
    fn stays_borrowed_for_a_single_piece() {
        let xml = "<xml><A><![CDATA[plain]]></A></xml>";
        let mut slots = [None];
        scan(xml, |n| (n == b"A").then_some(0), &mut slots).unwrap();
        assert!(matches!(slots[0], Some(Cow::Borrowed("plain"))));
    }

    #[test]
    fn skips_nested_and_unknown_elements() {
        let xml = "<xml><A>1</A><TransInfo><B>inner</B></TransInfo><C>z</C>\
                   <ScanCodeInfo><ScanType>qrcode</ScanType></ScanCodeInfo><B>2</B></xml>";
        assert_eq!(scan_two(xml).unwrap(), (Some("1".into()), Some("2".into())));
    }

    #[test]
    fn empty_elements_are_present_and_empty() {
        assert_eq!(
            scan_two("<xml><A/><B></B></xml>").unwrap(),
            (Some("".into()), Some("".into()))
        );
    }

    #[test]
    fn accepts_declaration_comments_and_blanks() {
        let xml =
            "\n<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- c --><xml>\n  <A>1</A>\n</xml>\n";
        assert_eq!(scan_two(xml).unwrap().0.as_deref(), Some("1"));
    }

    #[test]
    fn refuses() {
        let cases = [
            (
                "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><A>&x;</A></xml>",
                "doctype",
            ),
            ("<xml><A>1</A>", "unclosed root"),
            ("<xml><A>1</B></xml>", "mismatched end"),
            ("<xml><A>1</A></xml></xml>", "extra end"),
            ("<xml></xml><xml></xml>", "two roots"),
            ("<xml></xml>junk", "text after the root"),
            ("<xml><A>&bogus;</A></xml>", "unknown entity"),
            ("<xml><A", "truncated tag"),
            ("<", "lone bracket"),
            ("", "empty"),
        ];
        for (xml, why) in cases {
            assert!(scan_two(xml).is_err(), "{why}: {xml}");
        }
        assert_eq!(
            scan_two("<!DOCTYPE xml><xml/>").unwrap_err(),
            ParseError::Doctype
        );
    }

    proptest::proptest! {
        /// The byte scan says "copy as it is" exactly when every character is legal and no
        /// `]]>` is there.
        #[test]
        fn the_plain_cdata_check_is_the_character_definition(
            s in "\\PC*|[a-z\\]>\u{0}\u{1f}\t\n\r\u{7f}\u{FFFD}-\u{FFFF}\u{EFBF}你]{0,8}",
        ) {
            let by_chars = s.chars().all(is_xml_char) && !s.contains("]]>");
            proptest::prop_assert_eq!(is_plain_cdata(&s), by_chars, "{:?}", s);
        }
    }

    #[test]
    fn cdata_output_splits_the_terminator_and_drops_illegal_chars() {
        let mut out = String::new();
        push_cdata(&mut out, "a]]>b\u{1}]]\u{0}>c\u{FFFE}\t\u{1F600}");
        assert_eq!(
            out,
            "<![CDATA[a]]]]><![CDATA[>b]]]]><![CDATA[>c\t\u{1F600}]]>"
        );
        let xml = format!("<xml><A>{out}</A></xml>");
        assert_eq!(
            scan_two(&xml).unwrap().0.as_deref(),
            Some("a]]>b]]>c\t\u{1F600}")
        );
    }

    #[test]
    fn xml_chars() {
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFFD}',
            '\u{10000}',
        ] {
            assert!(is_xml_char(c), "{c:?}");
        }
        for c in [
            '\0', '\u{8}', '\u{B}', '\u{C}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            assert!(!is_xml_char(c), "{c:?}");
        }
    }
}
