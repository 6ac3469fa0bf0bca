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
    if s.chars().all(is_xml_char) && !s.contains("]]>") {
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
