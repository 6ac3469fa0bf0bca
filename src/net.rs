//! Small facts about addresses shared by kefu's outbound HTTP clients (the WeChat API client and
//! the `fetch` client).

/// Whether `url` names this machine (`localhost` or a loopback IP): a test's mock or a local
/// backend, which must never be reached through a proxy from the environment.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses() {
        for url in [
            "http://localhost:1/",
            "http://127.0.0.1/",
            "http://[::1]:8/x",
        ] {
            assert!(is_loopback(&reqwest::Url::parse(url).unwrap()), "{url}");
        }
        for url in [
            "https://api.weixin.qq.com/",
            "http://10.0.0.5/",
            "http://[2001:db8::1]/",
        ] {
            assert!(!is_loopback(&reqwest::Url::parse(url).unwrap()), "{url}");
        }
    }
}
