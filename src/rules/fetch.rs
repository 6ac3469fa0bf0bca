//! The `fetch` action of a rule (SPEC §10), compiled: what to call on the operator's backend,
//! checked at load, and the request for one message.
//!
//! Owns: `fetch_hosts` (only those hosts may be called), `${VAR}` (filled from the environment
//! at load to check it exists and to check the host; kept as written in the request so that a
//! secret never reaches the outbox or a log), URL-encoding of captures (user text can never change
//! the scheme, host or path), the method, headers and `timeout_ms`. Pure but for the environment
//! lookup, which [`LoadOptions`] passes in. Making the call is [`crate::fetch`]'s job.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::outbound::FetchRequest;

use super::Captures;

/// The longest `timeout_ms` a rule may give (an Official Account's passive reply waits for it
/// within WeChat's 5-second budget).
pub const MAX_TIMEOUT_MS: u64 = 3000;

/// `timeout_ms` when the rule gives none.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;

/// Looks up an environment variable (injectable, for tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Settings a rules folder is loaded with, beyond the FAQ's (built from `kefu.yaml` at
/// start-up).
#[derive(Clone)]
pub struct LoadOptions {
    /// Hosts (`host` or `host:port`, lower case) that `fetch` may call: kefu.yaml `fetch_hosts`.
    pub fetch_hosts: Vec<String>,
    /// The environment `${VAR}` is read from.
    pub env: EnvLookup,
    /// The largest image file `image: {file}` may name, in bytes (WeChat's upload limit for
    /// the strictest account kind that uses the folder).
    pub max_image_bytes: u64,
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("fetch_hosts", &self.fetch_hosts)
            .field("max_image_bytes", &self.max_image_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            fetch_hosts: Vec::new(),
            env: Arc::new(|name| std::env::var(name).ok()),
            max_image_bytes: crate::rules::files::MAX_IMAGE_BYTES_MINIPROGRAM,
        }
    }
}

impl LoadOptions {
    /// These options with `fetch_hosts`.
    pub fn with_fetch_hosts(mut self, hosts: &[String]) -> Self {
        self.fetch_hosts = hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        self
    }

    /// Whether `host` (and `port`, when not the scheme's default) is allowed.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        self.fetch_hosts.iter().any(|allowed| match port {
            Some(port) => *allowed == format!("{host}:{port}") || *allowed == host,
            None => *allowed == host,
        })
    }
}

/// A rule's `fetch`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchAction {
    /// `GET` or `POST`.
    pub method: String,
    /// The URL as written: `{name}` captures and `${VAR}` still in it.
    pub url: String,
    /// Headers as written (`${VAR}` still in the values).
    pub headers: BTreeMap<String, String>,
    /// How long the call may take.
    pub timeout_ms: u64,
    /// The reply when the call or a field fails.
    pub fallback: String,
}

impl FetchAction {
    /// The request for one message: captures URL-encoded into the URL; the message's text and
    /// the captures kept for a `POST` body and for the reply template.
    pub fn request(&self, captures: &Captures, text: &str) -> FetchRequest {
        FetchRequest {
            method: self.method.clone(),
            url: fill_url(&self.url, captures),
            headers: self.headers.clone(),
            timeout_ms: self.timeout_ms,
            text: text.to_string(),
            captures: captures.clone(),
        }
    }
}

/// Fills `${VAR}` and `${VAR:-default}` from `env`; the name of the first missing variable
/// (without a default) is the error.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("${") {
        out.push_str(rest.get(..open).unwrap_or(""));
        let after = rest.get(open + 2..).unwrap_or("");
        let Some(close) = after.find('}') else {
            return Err(format!("`${{` without a closing `}}` in {text:?}"));
        };
        let inside = after.get(..close).unwrap_or("");
        let (name, default) = match inside.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inside, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{inside}}}` is not a variable name"));
        }
        match (env(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(name.to_string()),
        }
        rest = after.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so that a capture cannot
/// add a `/`, `?`, `#`, `@`, `%`, `$` or `{` to the URL.
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Fills `{name}` / `{N}` in a URL template with URL-encoded captures; `${VAR}` and unknown
/// names stay as written.
pub fn fill_url(template: &str, captures: &Captures) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(rest.get(..open).unwrap_or(""));
        let after = rest.get(open + 1..).unwrap_or("");
        let is_env = open > 0 && rest.as_bytes().get(open - 1) == Some(&b'$');
        match after.find('}') {
            Some(close) if !is_env => {
                let name = after.get(..close).unwrap_or("");
                match captures.get(name) {
                    Some(value) => out.push_str(&url_encode(value)),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = after.get(close + 1..).unwrap_or("");
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks a URL as written (after `${VAR}`): `http(s)`, a host that no capture can change and
/// that `fetch_hosts` allows. Returns the problem.
pub fn check_url(expanded: &str, options: &LoadOptions) -> Result<(), String> {
    let (scheme, rest) = expanded
        .split_once("://")
        .ok_or_else(|| format!("`fetch.url` {expanded:?} is not an http(s) URL"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("`fetch.url` must be http or https, not {scheme:?}"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('{') || authority.contains('}') {
        return Err(
            "`fetch.url`: a capture cannot be part of the host (only of the path or query)".into(),
        );
    }
    if authority.contains('@') {
        return Err("`fetch.url` must not carry a user or password; use `headers`".into());
    }
    let (host, port) = split_authority(authority)
        .ok_or_else(|| format!("`fetch.url` has no valid host: {authority:?}"))?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = port.filter(|p| *p != default_port);
    let host = host.as_str();
    if !options.allows(host, port) {
        return Err(format!(
            "host {host:?} is not in kefu.yaml `fetch_hosts` (allowed: {})",
            if options.fetch_hosts.is_empty() {
                "none".to_string()
            } else {
                options.fetch_hosts.join(", ")
            }
        ));
    }
    Ok(())
}

/// `host[:port]` or `[v6][:port]` → host (lower case, IPv6 in brackets) and port.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (format!("[{inner}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (authority.to_string(), None),
        }
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    valid.then(|| (host.to_ascii_lowercase(), port))
}

/// The `{fetch.a.b}` placeholders of a reply template (the paths, without `fetch.`).
pub fn fetch_fields(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{fetch.") {
        let after = rest.get(open + "{fetch.".len()..).unwrap_or("");
        match after.find('}') {
            Some(close) => {
                out.push(after.get(..close).unwrap_or(""));
                rest = after.get(close + 1..).unwrap_or("");
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SHOP_TOKEN").then(|| "s3cret".to_string())
    }

    #[test]
    fn captures_cannot_change_path_or_host() {
        let captures = Captures::from([("order".to_string(), "1/../admin?x=1#${A}".to_string())]);
        assert_eq!(
            fill_url(
                "https://shop.example.com/api/orders/{order}?k=${KEY}",
                &captures
            ),
            "https://shop.example.com/api/orders/1%2F..%2Fadmin%3Fx%3D1%23%24%7BA%7D?k=${KEY}"
        );
        assert_eq!(url_encode("订单 1"), "%E8%AE%A2%E5%8D%95%201");
    }

    #[test]
    fn env_variables_are_filled_and_a_missing_one_is_named() {
        assert_eq!(
            expand_env("Bearer ${SHOP_TOKEN}", &env).unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(expand_env("${NOPE}", &env).unwrap_err(), "NOPE");
        assert_eq!(expand_env("${NOPE:-x y}", &env).unwrap(), "x y");
        assert_eq!(expand_env("${SHOP_TOKEN:-x}", &env).unwrap(), "s3cret");
        assert_eq!(expand_env("{order}", &env).unwrap(), "{order}");
    }

    #[test]
    fn only_allowed_hosts_pass() {
        let options = LoadOptions::default()
            .with_fetch_hosts(&["Shop.example.com".into(), "127.0.0.1:8000".into()]);
        assert!(check_url("https://shop.example.com/a/{order}", &options).is_ok());
        assert!(check_url("http://127.0.0.1:8000/a", &options).is_ok());
        assert!(check_url("http://127.0.0.1:9000/a", &options).is_err());
        assert!(check_url("https://evil.example.com/a", &options).is_err());
        assert!(check_url("https://{host}.example.com/a", &options).is_err());
        assert!(check_url("ftp://shop.example.com/a", &options).is_err());
        assert!(check_url("https://u:p@shop.example.com/a", &options).is_err());
    }

    #[test]
    fn fetch_fields_are_found() {
        assert_eq!(
            fetch_fields("订单 {order}：{fetch.status}，{fetch.eta.date}"),
            ["status", "eta.date"]
        );
    }
}
