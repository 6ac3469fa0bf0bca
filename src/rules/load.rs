//! From a rules folder to located specs: which files are read (every `*.yaml`/`*.yml` under the
//! folder, recursively, in path order, hidden files and folders skipped), and how one file's text
//! becomes [`RuleSpec`]s and FAQ specs, each with the `path:line:column` it was written at.
//!
//! Owns: the folder walk (the only file I/O of the rules engine besides the watcher), YAML syntax
//! errors, unknown top-level keys and per-item type errors. Every item is read on its own, so one
//! bad rule does not hide the problems of the next. Must not depend on the matcher or on what
//! the values mean (that is `compile`'s job).

use std::path::{Path, PathBuf};

use marked_yaml::types::MarkedScalarNode;
use marked_yaml::{LoadError, LoaderOptions, Marker, Node, Span};
use serde::Deserialize;

use crate::diag::{Diagnostic, Located, Location};
use crate::faq::FaqSource;

use super::model::RuleSpec;
use super::schedule::{Calendar, parse_dates};

/// Folders nested deeper than this are not read (a guard against symlink loops).
const MAX_DEPTH: usize = 16;

/// The top-level keys of a rules file.
const TOP_LEVEL_KEYS: [&str; 4] = ["rules", "faq", "synonyms", "clarify"];

/// One rules file as read from disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceFile {
    /// Where it was read from: every diagnostic about it starts with this path.
    pub path: PathBuf,
    /// Its whole text.
    pub text: String,
}

/// A rule as written, with where.
#[derive(Debug)]
pub struct ParsedRule {
    /// The rule's keys and values, each with its position.
    pub spec: RuleSpec,
    /// The file it was written in: spans in `spec` are resolved against it.
    pub path: PathBuf,
    /// The rule's first key: where diagnostics about the rule as a whole point.
    pub location: Location,
}

/// Everything found in a folder's files, in load order.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Rules in load order: files in path order, then position in the file.
    pub rules: Vec<ParsedRule>,
    /// FAQ entries, synonym groups and clarify groups, for the FAQ index.
    pub faq: FaqSource,
    /// Every `calendar:` dates, with where each is written: merged into one calendar.
    pub calendar: Calendar,
}

/// The location a span starts at, in `path`; `fallback` when the parser gave none.
pub fn locate(path: &Path, span: &Span, fallback: &Location) -> Location {
    match span.start() {
        Some(marker) => at_marker(path, marker),
        None => fallback.clone(),
    }
}

fn at_marker(path: &Path, marker: &Marker) -> Location {
    Location::new(path, marker.line().max(1), marker.column().max(1))
}

/// Lists and reads every rules file under `dir`, in path order. A folder that cannot be read is
/// one error; a file that cannot be read (or is not UTF-8) is an error about that file, and the
/// other files are still read.
pub fn read_folder(dir: &Path) -> (Vec<SourceFile>, Vec<Diagnostic>) {
    let mut paths = Vec::new();
    let mut diagnostics = Vec::new();
    if let Err(e) = std::fs::metadata(dir).and_then(|m| {
        if m.is_dir() {
            Ok(())
        } else {
            Err(std::io::Error::other("not a folder"))
        }
    }) {
        diagnostics.push(Diagnostic::error(
            Location::new(dir, 1, 1),
            format!("cannot read the rules folder: {e}"),
        ));
        return (Vec::new(), diagnostics);
    }
    walk(dir, 0, &mut paths, &mut diagnostics);
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => files.push(SourceFile { path, text }),
                Err(e) => diagnostics.push(Diagnostic::error(
                    Location::new(&path, 1, 1),
                    format!("not UTF-8 text: {e}"),
                )),
            },
            // Deleted between the listing and the read (an editor's save): the watcher will
            // reload again once the new file is in place.
            Err(e) => diagnostics.push(Diagnostic::error(
                Location::new(&path, 1, 1),
                format!("cannot read: {e}"),
            )),
        }
    }
    (files, diagnostics)
}

fn is_rules_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

fn walk(dir: &Path, depth: usize, paths: &mut Vec<PathBuf>, diagnostics: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diagnostics.push(Diagnostic::error(
                Location::new(dir, 1, 1),
                format!("cannot read folder: {e}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Hidden files are editors' swap files and tools' state (`.git`, `..data`).
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follows symlinks: a rules folder may be a tree of links (a mounted ConfigMap).
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                walk(&path, depth + 1, paths, diagnostics);
            }
        } else if meta.is_file() && is_rules_file(&path) {
            paths.push(path);
        }
    }
}

/// Parses every file, in order, collecting rules and FAQ specs and every problem found.
pub fn parse_files(files: &[SourceFile], diagnostics: &mut Vec<Diagnostic>) -> Parsed {
    let mut parsed = Parsed::default();
    for file in files {
        parse_file(file, &mut parsed, diagnostics);
    }
    parsed
}

fn parse_file(file: &SourceFile, parsed: &mut Parsed, diagnostics: &mut Vec<Diagnostic>) {
    let path = file.path.as_path();
    // prevent_coercion: a quoted scalar ("~", "true") stays text; only plain ones may be null.
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let root = match marked_yaml::parse_yaml_with_options(0, &file.text, options) {
        Ok(root) => root,
        Err(e) => {
            diagnostics.push(load_error(path, &e));
            return;
        }
    };
    let Some(top) = root.as_mapping() else {
        // The loader insists on a mapping; keep a message in case it ever lets one through.
        diagnostics.push(Diagnostic::error(
            Location::new(path, 1, 1),
            "a rules file is a mapping with `rules:`, `faq:`, `synonyms:` or `clarify:`",
        ));
        return;
    };
    for (key, value) in top.iter() {
        let key_location = locate(path, key.span(), &Location::new(path, 1, 1));
        if key.as_str() == "calendar" {
            read_calendar(
                path,
                value,
                &key_location,
                &mut parsed.calendar,
                diagnostics,
            );
            continue;
        }
        let Some(items) = list_items(path, key.as_str(), value, &key_location, diagnostics) else {
            continue;
        };
        match key.as_str() {
            "rules" => {
                for item in items {
                    let location = item_location(path, item, &key_location);
                    if let Some(spec) = read_item::<RuleSpec>(path, item, &location, diagnostics) {
                        parsed.rules.push(ParsedRule {
                            spec,
                            path: path.to_path_buf(),
                            location,
                        });
                    }
                }
            }
            "faq" => collect(
                path,
                items,
                &key_location,
                &mut parsed.faq.entries,
                diagnostics,
            ),
            "synonyms" => collect(
                path,
                items,
                &key_location,
                &mut parsed.faq.synonyms,
                diagnostics,
            ),
            "clarify" => collect(
                path,
                items,
                &key_location,
                &mut parsed.faq.clarify,
                diagnostics,
            ),
            other => diagnostics.push(Diagnostic::error(
                key_location,
                format!(
                    "unknown key `{other}`; a rules file holds {} or `calendar:`",
                    TOP_LEVEL_KEYS.map(|k| format!("`{k}:`")).join(", ")
                ),
            )),
        }
    }
}

/// `calendar: {holidays: [...], workdays: [...]}`: dates or ranges, merged into `calendar`.
fn read_calendar(
    path: &Path,
    value: &Node,
    key_location: &Location,
    calendar: &mut Calendar,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if matches!(value, Node::Scalar(s) if matches!(s.as_str(), "" | "~" | "null")) {
        return;
    }
    let Some(map) = value.as_mapping() else {
        diagnostics.push(Diagnostic::error(
            locate(path, value.span(), key_location),
            "`calendar` must be a mapping with `holidays:` and `workdays:` lists of dates",
        ));
        return;
    };
    for (key, list) in map.iter() {
        let at = locate(path, key.span(), key_location);
        let target = match key.as_str() {
            "holidays" => &mut calendar.holidays,
            "workdays" => &mut calendar.workdays,
            other => {
                diagnostics.push(Diagnostic::error(
                    at,
                    format!("unknown key `{other}` in `calendar`; use `holidays` or `workdays`"),
                ));
                continue;
            }
        };
        let items: &[Node] = match list {
            Node::Sequence(items) => items.as_slice(),
            Node::Scalar(s) if matches!(s.as_str(), "" | "~" | "null") => &[],
            _ => {
                diagnostics.push(Diagnostic::error(
                    locate(path, list.span(), &at),
                    format!(
                        "`{}` must be a list of dates (YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD)",
                        key.as_str()
                    ),
                ));
                continue;
            }
        };
        for item in items {
            let item_at = locate(path, item.span(), &at);
            match item.as_scalar().map(|s| parse_dates(s.as_str())) {
                Some(Ok(days)) => target.extend(days),
                Some(Err(message)) => diagnostics.push(Diagnostic::error(item_at, message)),
                None => diagnostics.push(Diagnostic::error(
                    item_at,
                    "a date is YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD",
                )),
            }
        }
    }
}

/// The items under a top-level key: a list, or nothing for an empty value (`rules:` alone).
/// `None` (with an error) when the value is something else; also for unknown keys, which the
/// caller reports.
fn list_items<'a>(
    path: &Path,
    key: &str,
    value: &'a Node,
    key_location: &Location,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<&'a [Node]> {
    if !TOP_LEVEL_KEYS.contains(&key) {
        return Some(&[]);
    }
    match value {
        Node::Sequence(items) => Some(items.as_slice()),
        Node::Scalar(s) if matches!(s.as_str(), "" | "~" | "null") => Some(&[]),
        _ => {
            diagnostics.push(Diagnostic::error(
                locate(path, value.span(), key_location),
                format!("`{key}` must be a list (items starting with `- `)"),
            ));
            None
        }
    }
}

fn collect<T: for<'de> Deserialize<'de>>(
    path: &Path,
    items: &[Node],
    key_location: &Location,
    out: &mut Vec<Located<T>>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for item in items {
        let location = item_location(path, item, key_location);
        if let Some(value) = read_item::<T>(path, item, &location, diagnostics) {
            out.push(Located { location, value });
        }
    }
}

/// Where an item of a list starts: its first key for a mapping (the mapping's own mark points
/// at the first colon), else the node itself.
fn item_location(path: &Path, item: &Node, fallback: &Location) -> Location {
    if let Some(map) = item.as_mapping()
        && let Some((key, _)) = map.iter().next()
    {
        return locate(path, key.span(), fallback);
    }
    locate(path, item.span(), fallback)
}

fn read_item<T: for<'de> Deserialize<'de>>(
    path: &Path,
    item: &Node,
    location: &Location,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<T> {
    if has_nulls(path, item, None, location, diagnostics) {
        return None;
    }
    match marked_yaml::from_node::<T>(item) {
        Ok(value) => Some(value),
        Err(e) => {
            // An error about the item as a whole (a missing key) has no path; its mark is the
            // mapping's, which points at the first colon: the item's first key reads better.
            let at = match (e.path(), e.start_mark()) {
                (Some(p), _) if matches!(&*e, marked_yaml::Error::UnknownFieldError(..)) => {
                    unknown_key_location(path, item, p).unwrap_or_else(|| location.clone())
                }
                (Some(p), Some(m)) if !p.is_empty() => at_marker(path, &m),
                _ => location.clone(),
            };
            diagnostics.push(Diagnostic::error(at, describe(&e)));
            None
        }
    }
}

/// YAML's null written plainly (`~`, `null`). The loader reads every scalar as text, so without
/// this check `reply: ~` would send a "~" to users and `keywords: ~` would match one.
fn is_null(scalar: &MarkedScalarNode) -> bool {
    scalar.may_coerce() && matches!(scalar.as_str(), "~" | "null" | "Null" | "NULL")
}

/// Reports every null value under `node` (mapping values and list items, at any depth); true
/// when there was one. `key` names the value `node` is, for the message.
fn has_nulls(
    path: &Path,
    node: &Node,
    key: Option<&str>,
    fallback: &Location,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    match node {
        Node::Scalar(scalar) if is_null(scalar) => {
            let what = key.map_or("a list item".to_string(), |k| format!("`{k}`"));
            diagnostics.push(Diagnostic::error(
                locate(path, scalar.span(), fallback),
                format!(
                    "{what} is null (`{}`): give a value, quote it to mean the text, or leave \
                     it out",
                    scalar.as_str()
                ),
            ));
            true
        }
        Node::Scalar(_) => false,
        Node::Mapping(map) => {
            let mut found = false;
            for (k, v) in map.iter() {
                found |= has_nulls(path, v, Some(k.as_str()), fallback, diagnostics);
            }
            found
        }
        Node::Sequence(items) => {
            let mut found = false;
            for item in items.iter() {
                found |= has_nulls(path, item, None, fallback, diagnostics);
            }
            found
        }
    }
}

/// The key an unknown-key error names, found by walking its path (`schedule.form`) in the item:
/// the loader's own mark points at the enclosing mapping.
fn unknown_key_location(path: &Path, item: &Node, error_path: &str) -> Option<Location> {
    let mut node = item;
    let mut segments: Vec<&str> = error_path.split('.').filter(|s| !s.is_empty()).collect();
    let field = segments.pop()?;
    for segment in segments {
        let mut parts = segment.split('[');
        let key = parts.next().unwrap_or("");
        if !key.is_empty() {
            node = node.as_mapping()?.get_node(key)?;
        }
        for index in parts {
            let index: usize = index.trim_end_matches(']').parse().ok()?;
            node = node.as_sequence()?.get_node(index)?;
        }
    }
    let (key, _) = node
        .as_mapping()?
        .iter()
        .find(|(k, _)| k.as_str() == field)?;
    key.span().start().map(|m| at_marker(path, m))
}

/// One line for a deserialization error, in the words of a rules file (keys, not fields).
fn describe(e: &marked_yaml::FromNodeError) -> String {
    use marked_yaml::Error;
    let path = e.path().unwrap_or("").trim_start_matches('.');
    let parent = path.rsplit_once('.').map(|(parent, _)| parent);
    match &**e {
        Error::UnknownFieldError(field, expected, _) => {
            let within = parent.map(|p| format!(" in `{p}`")).unwrap_or_default();
            format!(
                "unknown key `{field}`{within}; expected one of: {}",
                expected.join(", ")
            )
        }
        Error::NotBoolean(_) => format!("`{path}` must be true or false (without quotes)"),
        Error::IntegerParseFailure(..) => format!("`{path}` must be a whole number"),
        Error::FloatParseFailure(..) => format!("`{path}` must be a number"),
        Error::Other(message, _) => {
            let message = message
                .replace("missing field", "missing key")
                .replace("unknown field", "unknown key");
            if path.is_empty() {
                message
            } else {
                format!("`{path}`: {message}")
            }
        }
    }
}

fn load_error(path: &Path, e: &LoadError) -> Diagnostic {
    match e {
        LoadError::TopLevelMustBeMapping(m) => Diagnostic::error(
            at_marker(path, m),
            "a rules file is a mapping with `rules:`, `faq:`, `synonyms:` or `clarify:`",
        ),
        LoadError::TopLevelMustBeSequence(m) => {
            Diagnostic::error(at_marker(path, m), "expected a list")
        }
        LoadError::UnexpectedAnchor(m) => Diagnostic::error(
            at_marker(path, m),
            "YAML anchors and aliases (`&name`, `*name`) are not supported in rules files",
        ),
        LoadError::MappingKeyMustBeScalar(m) => {
            Diagnostic::error(at_marker(path, m), "a key must be a plain text")
        }
        LoadError::UnexpectedTag(m) => Diagnostic::error(
            at_marker(path, m),
            "YAML tags (`!name`) are not supported in rules files",
        ),
        LoadError::ScanError(m, scan) => Diagnostic::error(
            at_marker(path, m),
            format!("YAML syntax error: {}", scan.info()),
        ),
        LoadError::DuplicateKey(inner) => {
            let first = inner
                .prev_key
                .span()
                .start()
                .map(|m| format!(" (first at line {}, column {})", m.line(), m.column()))
                .unwrap_or_default();
            let at = inner
                .key
                .span()
                .start()
                .map(|m| at_marker(path, m))
                .unwrap_or_else(|| Location::new(path, 1, 1));
            Diagnostic::error(at, format!("duplicate key `{}`{first}", inner.key.as_str()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Parsed, Vec<String>) {
        let files = [SourceFile {
            path: PathBuf::from("r.yaml"),
            text: text.to_string(),
        }];
        let mut diagnostics = Vec::new();
        let parsed = parse_files(&files, &mut diagnostics);
        (parsed, diagnostics.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn an_empty_file_or_empty_lists_are_fine() {
        for text in ["", "# nothing yet\n", "rules:\nfaq: ~\n", "rules: []\n"] {
            let (parsed, diags) = parse(text);
            assert!(diags.is_empty(), "{text:?}: {diags:?}");
            assert!(parsed.rules.is_empty());
        }
    }

    #[test]
    fn each_problem_is_located() {
        let text = "\
rules:
  - id: a
    reply: x
    keyword: [y]
  - id: b
    priority: high
  - priority: 1
  - id: c
    schedule: {days: [mon], form: \"09:00\"}
  - id: d
    handoff: maybe
  - id: ok
    keywords: [z]
bogus: 1
faq:
  - id: f1
    question: q
    answr: a
";
        let (parsed, diags) = parse(text);
        assert_eq!(parsed.rules.len(), 1);
        assert_eq!(parsed.rules[0].location, Location::new("r.yaml", 12, 5));
        let want = [
            "r.yaml:4:5: unknown key `keyword`",
            "r.yaml:6:15: `priority` must be a whole number",
            "r.yaml:7:5: missing key `id`",
            "r.yaml:9:29: unknown key `form` in `schedule`",
            "r.yaml:11:14: `handoff` must be true or false",
            "r.yaml:14:1: unknown key `bogus`",
            "r.yaml:18:5: unknown key `answr`",
        ];
        assert_eq!(diags.len(), want.len(), "{diags:#?}");
        for (got, want) in diags.iter().zip(want) {
            assert!(got.starts_with(want), "{got} does not start with {want}");
        }
    }

    #[test]
    fn syntax_errors_and_unsupported_yaml_are_located() {
        let table = [
            ("rules: [\n", "r.yaml:2:1: YAML syntax error"),
            ("- a\n", "r.yaml:1:1: a rules file is a mapping"),
            ("rules:\n  - &x {id: a}\n", "r.yaml:2:8: YAML anchors"),
            (
                "rules:\n  - id: a\n    id: b\n",
                "r.yaml:3:5: duplicate key `id`",
            ),
            ("rules: 3\n", "r.yaml:1:8: `rules` must be a list"),
        ];
        for (text, want) in table {
            let (_, diags) = parse(text);
            assert_eq!(diags.len(), 1, "{text:?}: {diags:?}");
            assert!(diags[0].starts_with(want), "{text:?}: {}", diags[0]);
        }
    }

    #[test]
    fn faq_specs_are_collected_with_their_location() {
        let text = "faq:\n  - id: e\n    question: q\n    answer: a\nsynonyms:\n  - [注销, 销户]\n";
        let (parsed, diags) = parse(text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(parsed.faq.entries.len(), 1);
        assert_eq!(
            parsed.faq.entries[0].location,
            Location::new("r.yaml", 2, 5)
        );
        assert_eq!(parsed.faq.synonyms.len(), 1);
    }

    #[test]
    fn folder_is_read_recursively_in_path_order_skipping_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("faq")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        for name in [
            "10-b.yaml",
            "00-a.yml",
            "faq/x.yaml",
            "notes.txt",
            ".00-a.yaml.swp",
            ".git/c.yaml",
            "README.md",
        ] {
            std::fs::write(root.join(name), "rules: []\n").unwrap();
        }
        let (files, diags) = read_folder(root);
        assert!(diags.is_empty(), "{diags:?}");
        let names: Vec<_> = files
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["00-a.yml", "10-b.yaml", "faq/x.yaml"]);
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let (files, diags) = read_folder(Path::new("/nonexistent/kefu-rules"));
        assert!(files.is_empty());
        assert_eq!(diags.len(), 1);
        assert!(diags[0].is_error());
    }
}
