//! From a located [`RuleSpec`](super::model::RuleSpec) to a [`Draft`]: what each value means,
//! checked one rule at a time.
//!
//! Owns: normalization of keywords and exact values, regex compilation (once, with a size
//! limit), schedules, the implied `msg_type` of an `event` rule, the actions, and the per-rule
//! errors (empty keyword, invalid regex, no condition, no action, …), each at the position of the
//! offending value. Cross-rule checks (duplicate ids, defaults, FAQ references, examples,
//! shadowing) live in `lint`. Must not depend on the matcher or do I/O.

use std::path::Path;

use marked_yaml::Span;
use regex::{Regex, RegexBuilder};

use crate::diag::{Diagnostic, Located, Location};
use crate::outbound::OutboundMessage;
use crate::text::normalize;

use super::RuleAction;
use super::fetch::{self as fetch_spec, FetchAction, LoadOptions};
use super::files;
use super::load::{ParsedRule, locate};
use super::model::{Texts, texts};
use super::schedule::{Schedule, parse_day, parse_time};

/// The compiled size one regex may take (its NFA), so that an operator's `\w{1000}` is an error
/// on load rather than memory at run time.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The compiled size all regexes together may take in the one `RegexSet`.
pub const REGEX_SET_SIZE_LIMIT: usize = 256 << 20;

/// The message type a rule applies to when it names none.
pub const DEFAULT_MSG_TYPE: &str = "text";

/// What a rule requires of a message, normalized and compiled.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// Any one appears (normalized).
    pub keywords: Vec<Located<String>>,
    /// Every one appears (normalized).
    pub all: Vec<Located<String>>,
    /// None appears (normalized).
    pub not: Vec<Located<String>>,
    /// The whole normalized message equals one (normalized).
    pub exact: Vec<Located<String>>,
    /// Any one matches; compiled once here, also kept as written for the `RegexSet`.
    pub regexes: Vec<(Located<String>, Regex)>,
    /// Lower case; `text` unless the rule says otherwise.
    pub msg_type: String,
    /// Lower case; only for `event` rules.
    pub event: Option<String>,
    /// `event_key`: any one equals the event's key (as written, trimmed).
    pub event_keys: Vec<String>,
    /// When the rule applies.
    pub schedule: Option<Schedule>,
    /// Whether the rule wrote any condition at all (a rule without one is an error).
    pub given: bool,
}

impl Conditions {
    /// Whether the rule looks at the text at all (keywords, all, exact or regex).
    pub fn has_text_condition(&self) -> bool {
        !self.keywords.is_empty()
            || !self.all.is_empty()
            || !self.exact.is_empty()
            || !self.regexes.is_empty()
    }
}

/// One rule, checked on its own, ready for the cross-rule checks and the matcher.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The rule's id, trimmed.
    pub id: String,
    /// Where the id is written (duplicate-id errors point here).
    pub id_location: Location,
    /// Where the rule starts (errors about the rule as a whole point here).
    pub location: Location,
    /// Higher wins.
    pub priority: i64,
    /// Where `default: true` is written, for a default rule.
    pub default: Option<Location>,
    /// `misses: N` of a default rule (0 when not given).
    pub misses: u32,
    /// What the rule requires.
    pub conditions: Conditions,
    /// What the rule does.
    pub action: RuleAction,
    /// Where each reply of `action.replies` is written (for length warnings).
    pub reply_locations: Vec<Location>,
    /// The FAQ entry named by `faq:`, with where.
    pub faq: Option<Located<String>>,
    /// Messages this rule must win (normalized).
    pub examples: Vec<Located<String>>,
    /// Messages this rule must not win (normalized).
    pub not_examples: Vec<Located<String>>,
    /// The rule has an error: the set is refused, and the rule is left out of the matcher and
    /// the lints so that what is left of it (e.g. without its invalid regex) causes no false
    /// alarms elsewhere.
    pub broken: bool,
}

impl Draft {
    /// Whether the matcher considers this rule (the default rule and rules without conditions
    /// are never returned by `match_message`).
    pub fn is_matchable(&self) -> bool {
        self.default.is_none() && self.conditions.given && !self.broken
    }
}

/// Builds a regex the way every rule regex is built: on normalized (lower-case) text, so
/// case-insensitive; with the size limit.
pub fn build_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| regex_error(&e))
}

/// One line for a regex error (the syntax error's own text spans several lines).
pub fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => {
            format!("regex is over the size limit ({limit} bytes once compiled); simplify it")
        }
        regex::Error::Syntax(text) => {
            let reason = text
                .lines()
                .rev()
                .find(|l| l.trim_start().starts_with("error:"))
                .map(|l| l.trim_start().trim_start_matches("error:").trim())
                .unwrap_or(text.as_str());
            format!("invalid regex: {reason}")
        }
        other => format!("invalid regex: {other}"),
    }
}

/// Resolves spans of one rule's file.
struct At<'a> {
    path: &'a Path,
    rule: &'a Location,
}

impl At<'_> {
    fn span(&self, span: &Span) -> Location {
        locate(self.path, span, self.rule)
    }

    fn items(&self, value: &Texts) -> Vec<Located<String>> {
        texts(value)
            .into_iter()
            .map(|(text, span)| Located {
                location: self.span(&span),
                value: text,
            })
            .collect()
    }

    fn texts(&self, value: &Option<Texts>) -> Vec<Located<String>> {
        value.as_ref().map(|v| self.items(v)).unwrap_or_default()
    }
}

/// Checks one rule on its own; every problem goes to `diagnostics`. The draft is returned even
/// when something is wrong, so that later checks still run on what is valid. `dir` is the rules
/// folder (image files are relative to it).
pub fn draft(
    rule: &ParsedRule,
    dir: &Path,
    options: &LoadOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Draft {
    let at = At {
        path: &rule.path,
        rule: &rule.location,
    };
    let diagnostics_before = diagnostics.len();
    let spec = &rule.spec;
    let id = spec.id.trim().to_string();
    let id_location = at.span(spec.id.span());
    if id.is_empty() {
        diagnostics.push(Diagnostic::error(id_location.clone(), "empty rule id"));
    }
    let default = spec
        .default
        .as_ref()
        .filter(|d| ***d)
        .map(|d| at.span(d.span()));

    let mut conditions = Conditions {
        msg_type: DEFAULT_MSG_TYPE.to_string(),
        ..Conditions::default()
    };
    let mut written: Vec<&str> = Vec::new();
    for (key, value) in [
        ("keywords", &spec.keywords),
        ("all", &spec.all),
        ("not", &spec.not),
        ("exact", &spec.exact),
        ("regex", &spec.regex),
    ] {
        let Some(value) = value else { continue };
        written.push(key);
        let items = at.items(value);
        if items.is_empty() && key != "not" {
            diagnostics.push(Diagnostic::error(
                at.span(value.span()),
                format!("`{key}` is an empty list: the rule could never match"),
            ));
        }
        if key == "regex" {
            for item in items {
                if item.value.is_empty() {
                    diagnostics.push(Diagnostic::error(
                        item.location,
                        "empty regex (it would match every message)",
                    ));
                    continue;
                }
                match build_regex(&item.value) {
                    Ok(regex) => conditions.regexes.push((item, regex)),
                    Err(message) => diagnostics.push(Diagnostic::error(item.location, message)),
                }
            }
            continue;
        }
        let what = match key {
            "exact" => "empty exact value",
            _ => "empty keyword",
        };
        let target = match key {
            "keywords" => &mut conditions.keywords,
            "all" => &mut conditions.all,
            "not" => &mut conditions.not,
            _ => &mut conditions.exact,
        };
        for item in items {
            let normalized = normalize(&item.value);
            if normalized.is_empty() {
                diagnostics.push(Diagnostic::error(item.location, what));
            } else {
                target.push(Located {
                    location: item.location,
                    value: normalized,
                });
            }
        }
    }

    if let Some(msg_type) = &spec.msg_type {
        written.push("msg_type");
        let value = msg_type.trim().to_ascii_lowercase();
        if value.is_empty() {
            diagnostics.push(Diagnostic::error(
                at.span(msg_type.span()),
                "empty `msg_type`",
            ));
        } else {
            conditions.msg_type = value;
        }
    }
    if let Some(event) = &spec.event {
        written.push("event");
        let value = event.trim().to_ascii_lowercase();
        if value.is_empty() {
            diagnostics.push(Diagnostic::error(at.span(event.span()), "empty `event`"));
        } else if spec.msg_type.is_some() && conditions.msg_type != "event" {
            diagnostics.push(Diagnostic::error(
                at.span(event.span()),
                format!(
                    "`event` applies only to `msg_type: event`, not `{}`",
                    conditions.msg_type
                ),
            ));
        } else {
            conditions.msg_type = "event".into();
            conditions.event = Some(value);
        }
    }
    if let Some(keys) = &spec.event_key {
        written.push("event_key");
        let items = at.items(keys);
        if items.is_empty() {
            diagnostics.push(Diagnostic::error(
                at.span(keys.span()),
                "`event_key` is an empty list: the rule could never match",
            ));
        }
        for item in items {
            let key = item.value.trim().to_string();
            if key.is_empty() {
                diagnostics.push(Diagnostic::error(item.location, "empty `event_key`"));
            } else {
                conditions.event_keys.push(key);
            }
        }
        if spec.msg_type.is_some() && conditions.msg_type != "event" {
            diagnostics.push(Diagnostic::error(
                at.span(keys.span()),
                format!(
                    "`event_key` applies only to `msg_type: event`, not `{}`",
                    conditions.msg_type
                ),
            ));
        } else {
            conditions.msg_type = "event".into();
        }
    }
    if let Some(schedule) = &spec.schedule {
        written.push("schedule");
        conditions.schedule = parse_schedule(&at, schedule, diagnostics);
    }
    conditions.given = !written.is_empty();
    if conditions.msg_type == "event" && conditions.has_text_condition() {
        diagnostics.push(Diagnostic::warning(
            rule.location.clone(),
            "an event carries no text: the text conditions of this rule never match",
        ));
    }

    // Actions.
    let replies = at.texts(&spec.reply);
    let mut reply_locations = Vec::new();
    let mut action = RuleAction::default();
    if let Some(r) = &spec.reply
        && texts(r).is_empty()
    {
        diagnostics.push(Diagnostic::error(
            at.span(r.span()),
            "`reply` is an empty list",
        ));
    }
    for reply in replies {
        if reply.value.trim().is_empty() {
            diagnostics.push(Diagnostic::error(reply.location, "empty reply"));
            continue;
        }
        reply_locations.push(reply.location);
        action.replies.push(reply.value);
    }
    if let Some(reply_all) = &spec.reply_all {
        action.reply_all = **reply_all;
        if action.reply_all && spec.reply.is_none() {
            diagnostics.push(Diagnostic::warning(
                at.span(reply_all.span()),
                "`reply_all` without `reply` does nothing",
            ));
        }
    }
    action.handoff = spec.handoff.as_ref().is_some_and(|h| **h);
    let faq = spec.faq.as_ref().and_then(|f| {
        let name = f.trim().to_string();
        let location = at.span(f.span());
        if name.is_empty() {
            diagnostics.push(Diagnostic::error(
                location,
                "empty `faq`: name an FAQ entry",
            ));
            None
        } else {
            Some(Located {
                location,
                value: name,
            })
        }
    });
    action.faq = faq.as_ref().map(|f| f.value.clone());
    action.media = media(&at, rule, dir, options, diagnostics);
    action.fetch = fetch(&at, rule, options, diagnostics);

    let has_action = !action.replies.is_empty()
        || action.faq.is_some()
        || action.handoff
        || !action.media.is_empty();
    if !has_action {
        diagnostics.push(Diagnostic::error(
            rule.location.clone(),
            format!(
                "rule `{id}` has no action: give `reply`, `faq`, `handoff: true`, `image`, \
                 `link` or `miniprogrampage`"
            ),
        ));
    }

    let examples = normalized_texts(&at, &spec.examples, "example", diagnostics);
    let not_examples = normalized_texts(&at, &spec.not_examples, "not_example", diagnostics);

    let misses = spec.misses.as_ref().map_or(0, |m| **m);
    if let Some(m) = &spec.misses
        && default.is_none()
    {
        diagnostics.push(Diagnostic::error(
            at.span(m.span()),
            "`misses` applies only to a default rule (`default: true`)",
        ));
    }
    if let Some(default_at) = &default {
        let conditions: Vec<&str> = written
            .iter()
            .copied()
            .filter(|k| *k != "schedule")
            .collect();
        if !conditions.is_empty() {
            diagnostics.push(Diagnostic::error(
                default_at.clone(),
                format!(
                    "a default rule applies when nothing else does; its only conditions are \
                     `schedule` and `misses` (found `{}`)",
                    conditions.join("`, `")
                ),
            ));
        }
        if !examples.is_empty() || !not_examples.is_empty() {
            diagnostics.push(Diagnostic::error(
                default_at.clone(),
                "the default rule takes no `examples` or `not_examples`: it never wins a match",
            ));
        }
    } else if written.is_empty() && spec.misses.is_none() {
        diagnostics.push(Diagnostic::error(
            rule.location.clone(),
            format!(
                "rule `{id}` has no condition: give `keywords`, `all`, `exact`, `regex`, `not`, \
                 `msg_type`, `event` or `schedule` (or `default: true`)"
            ),
        ));
    }

    Draft {
        id,
        id_location,
        location: rule.location.clone(),
        priority: spec.priority.as_ref().map_or(0, |p| **p),
        default,
        misses,
        conditions,
        action,
        reply_locations,
        faq,
        examples,
        not_examples,
        broken: diagnostics
            .get(diagnostics_before..)
            .is_some_and(|new| new.iter().any(Diagnostic::is_error)),
    }
}

fn normalized_texts(
    at: &At<'_>,
    value: &Option<Texts>,
    what: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Located<String>> {
    let mut out = Vec::new();
    for item in at.texts(value) {
        let normalized = normalize(&item.value);
        if normalized.is_empty() {
            diagnostics.push(Diagnostic::error(item.location, format!("empty {what}")));
        } else {
            out.push(Located {
                location: item.location,
                value: normalized,
            });
        }
    }
    out
}

fn parse_schedule(
    at: &At<'_>,
    schedule: &marked_yaml::Spanned<super::model::ScheduleSpec>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Schedule> {
    let before = diagnostics.len();
    let mut days = Vec::new();
    if let Some(spec_days) = &schedule.days {
        let items = texts(spec_days);
        if items.is_empty() {
            diagnostics.push(Diagnostic::error(
                at.span(spec_days.span()),
                "`days` is an empty list: the rule could never match (leave it out for every day)",
            ));
        }
        for (name, span) in items {
            match parse_day(&name) {
                Ok(day) => days.push(day),
                Err(message) => diagnostics.push(Diagnostic::error(at.span(&span), message)),
            }
        }
    }
    let mut time = |value: &Option<marked_yaml::Spanned<String>>, end: bool| {
        value.as_ref().and_then(|v| match parse_time(v, end) {
            Ok(minutes) => Some(minutes),
            Err(message) => {
                diagnostics.push(Diagnostic::error(at.span(v.span()), message));
                None
            }
        })
    };
    let from = time(&schedule.from, false);
    let to = time(&schedule.to, true);
    if diagnostics.len() > before {
        return None;
    }
    match Schedule::new(&days, from, to) {
        Ok(schedule) => Some(schedule),
        Err(message) => {
            diagnostics.push(Diagnostic::error(at.span(schedule.span()), message));
            None
        }
    }
}

/// `fetch` and `fallback`, checked: method, timeout, `${VAR}` (a missing one is an error),
/// the host against `fetch_hosts`, and that there is a reply template and a fallback.
fn fetch(
    at: &At<'_>,
    rule: &ParsedRule,
    options: &LoadOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<FetchAction> {
    let spec = &rule.spec;
    let Some(fetch) = &spec.fetch else {
        if let Some(fallback) = &spec.fallback {
            diagnostics.push(Diagnostic::error(
                at.span(fallback.span()),
                "`fallback` applies only to a rule with `fetch`",
            ));
        }
        return None;
    };
    let location = at.span(fetch.span());
    let before = diagnostics.len();
    let mut error =
        |at: Location, message: String| diagnostics.push(Diagnostic::error(at, message));
    let method = match &fetch.method {
        None => "GET".to_string(),
        Some(m) => {
            let value = m.trim().to_ascii_uppercase();
            if value != "GET" && value != "POST" {
                error(
                    at.span(m.span()),
                    format!("`fetch.method` must be GET or POST, not {:?}", m.as_str()),
                );
            }
            value
        }
    };
    let timeout_ms = match &fetch.timeout_ms {
        None => fetch_spec::DEFAULT_TIMEOUT_MS,
        Some(t) => {
            if **t == 0 || **t > fetch_spec::MAX_TIMEOUT_MS {
                error(
                    at.span(t.span()),
                    format!(
                        "`fetch.timeout_ms` must be between 1 and {} (an Official Account's \
                         answer must leave within WeChat's 5 seconds)",
                        fetch_spec::MAX_TIMEOUT_MS
                    ),
                );
            }
            **t
        }
    };
    let url_at = at.span(fetch.url.span());
    match fetch_spec::expand_env(&fetch.url, &*options.env) {
        Ok(expanded) => {
            if let Err(message) = fetch_spec::check_url(&expanded, options) {
                error(url_at, message);
            }
        }
        Err(message) => error(url_at, env_message(&message)),
    }
    let mut headers = std::collections::BTreeMap::new();
    if let Some(written) = &fetch.headers {
        let headers_at = at.span(written.span());
        for (name, value) in written.iter() {
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid_name {
                error(
                    headers_at.clone(),
                    format!("`fetch.headers`: {name:?} is not a header name"),
                );
            }
            match fetch_spec::expand_env(value, &*options.env) {
                Ok(expanded) if expanded.contains(['\r', '\n']) => error(
                    headers_at.clone(),
                    format!("`fetch.headers.{name}` must be one line"),
                ),
                Ok(_) => {}
                Err(message) => error(headers_at.clone(), env_message(&message)),
            }
            headers.insert(name.clone(), value.clone());
        }
    }
    if spec.reply.is_none() {
        error(
            location.clone(),
            "a rule with `fetch` needs a `reply` template (with `{fetch.field}`)".into(),
        );
    }
    let fallback = match &spec.fallback {
        Some(f) if !f.trim().is_empty() => f.to_string(),
        Some(f) => {
            error(at.span(f.span()), "empty `fallback`".into());
            String::new()
        }
        None => {
            error(
                location,
                "a rule with `fetch` needs a `fallback` (sent when the call or a field fails)"
                    .into(),
            );
            String::new()
        }
    };
    if spec.faq.is_some() {
        error(
            at.span(fetch.span()),
            "`fetch` and `faq` cannot be combined: the fetched reply is the answer".into(),
        );
    }
    (diagnostics.len() == before).then_some(FetchAction {
        method,
        url: fetch.url.to_string(),
        headers,
        timeout_ms,
        fallback,
    })
}

/// The message for `expand_env`'s error: a missing variable's name, or the problem.
fn env_message(message: &str) -> String {
    if message
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        format!(
            "environment variable `{message}` is not set (`${{{message}}}` is filled from kefu's \
             environment when the rules load)"
        )
    } else {
        message.to_string()
    }
}

/// Image, link and Mini Program card messages, in the order they are written in the rule.
fn media(
    at: &At<'_>,
    rule: &ParsedRule,
    dir: &Path,
    options: &LoadOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<OutboundMessage> {
    let spec = &rule.spec;
    let mut out: Vec<(Location, OutboundMessage)> = Vec::new();
    let mut problems: Vec<Diagnostic> = Vec::new();
    let require =
        |problems: &mut Vec<Diagnostic>, location: &Location, field: &str, value: &str| {
            if value.trim().is_empty() {
                problems.push(Diagnostic::error(
                    location.clone(),
                    format!("`{field}` is empty"),
                ));
            }
        };
    let image_file = |problems: &mut Vec<Diagnostic>,
                      location: &Location,
                      key: &str,
                      file: &marked_yaml::Spanned<String>| {
        let file_at = at.span(file.span());
        let file_at = if file_at.line == 0 {
            location.clone()
        } else {
            file_at
        };
        match files::check_image(dir, file, options.max_image_bytes) {
            Ok(path) => Some(path.display().to_string()),
            Err(message) => {
                problems.push(Diagnostic::error(file_at, format!("`{key}`: {message}")));
                None
            }
        }
    };
    if let Some(image) = &spec.image {
        let location = at.span(image.span());
        match (&image.media_id, &image.file) {
            (Some(media_id), None) => {
                require(&mut problems, &location, "image.media_id", media_id);
                out.push((
                    location,
                    OutboundMessage::Image {
                        media_id: media_id.clone(),
                    },
                ));
            }
            (None, Some(file)) => {
                if let Some(path) = image_file(&mut problems, &location, "image.file", file) {
                    out.push((
                        location,
                        OutboundMessage::ImageFile {
                            name: file.to_string(),
                            path,
                        },
                    ));
                }
            }
            _ => problems.push(Diagnostic::error(
                location,
                "`image` takes exactly one of `media_id` and `file`",
            )),
        }
    }
    if let Some(link) = &spec.link {
        let location = at.span(link.span());
        require(&mut problems, &location, "link.title", &link.title);
        require(&mut problems, &location, "link.url", &link.url);
        out.push((
            location,
            OutboundMessage::Link {
                title: link.title.clone(),
                description: link.description.clone(),
                url: link.url.clone(),
                thumb_url: link.thumb_url.clone(),
            },
        ));
    }
    if let Some(page) = &spec.miniprogrampage {
        let location = at.span(page.span());
        require(
            &mut problems,
            &location,
            "miniprogrampage.title",
            &page.title,
        );
        require(
            &mut problems,
            &location,
            "miniprogrampage.pagepath",
            &page.pagepath,
        );
        match (&page.thumb_media_id, &page.thumb_file) {
            (Some(thumb_media_id), None) => {
                require(
                    &mut problems,
                    &location,
                    "miniprogrampage.thumb_media_id",
                    thumb_media_id,
                );
                out.push((
                    location,
                    OutboundMessage::MiniProgramPage {
                        title: page.title.clone(),
                        pagepath: page.pagepath.clone(),
                        thumb_media_id: thumb_media_id.clone(),
                    },
                ));
            }
            (None, Some(file)) => {
                if let Some(path) =
                    image_file(&mut problems, &location, "miniprogrampage.thumb_file", file)
                {
                    out.push((
                        location,
                        OutboundMessage::MiniProgramPageFile {
                            title: page.title.clone(),
                            pagepath: page.pagepath.clone(),
                            thumb_name: file.to_string(),
                            thumb_path: path,
                        },
                    ));
                }
            }
            _ => problems.push(Diagnostic::error(
                location,
                "`miniprogrampage` takes exactly one of `thumb_media_id` and `thumb_file`",
            )),
        }
    }
    diagnostics.append(&mut problems);
    out.sort_by_key(|(at, _)| (at.line, at.column));
    out.into_iter().map(|(_, message)| message).collect()
}

/// Evaluation order: indices of the matchable drafts by priority (highest first), then load
/// order. The position of a rule in this list is its rank.
pub fn ranking(drafts: &[Draft]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..drafts.len())
        .filter(|&i| drafts.get(i).is_some_and(Draft::is_matchable))
        .collect();
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(drafts.get(i).map_or(0, |d| d.priority)),
            i,
        )
    });
    order
}
