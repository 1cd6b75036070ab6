//! The `--http` URL: parsed once at start-up, shown without its query.

use std::fmt;
use std::str::FromStr;

use hyper::Uri;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// An `http[s]://host[:port][/path][?query]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    scheme: Scheme,
    /// The whole URL for the client: scheme, authority as written, path and query.
    uri: Uri,
}

impl HttpUrl {
    /// Plain or TLS.
    pub(crate) fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The absolute URI each request is sent to.
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }
}

impl FromStr for HttpUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        // Errors show the URL without its query or fragment (an API key may be there).
        let shown = pythia::redis::mask_url(&s[..s.find(['?', '#']).unwrap_or(s.len())]);
        let lower = s.to_ascii_lowercase();
        let (scheme, rest) = if lower.starts_with("http://") {
            (Scheme::Http, &s[7..])
        } else if lower.starts_with("https://") {
            (Scheme::Https, &s[8..])
        } else {
            return Err(format!(
                "invalid --http URL {shown:?}: expected http[s]://host[:port][/path]"
            ));
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(format!(
                "invalid --http URL {shown:?}: credentials in the URL are not supported"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("invalid --http URL {shown:?}: unclosed [ in the host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("invalid --http URL {shown:?}: no host"));
        }
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            p.parse::<u16>()
                .map_err(|_| format!("invalid --http URL {shown:?}: bad port {p:?}"))?;
        }
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "invalid --http URL {shown:?}: spaces or control characters in the path (percent-encode them)"
            ));
        }
        // The client's own parse has the last word; its error never quotes the URL.
        let uri: Uri = format!("{}://{authority}{target}", scheme.as_str())
            .parse()
            .map_err(|e| format!("invalid --http URL {shown:?}: {e}"))?;
        Ok(Self { scheme, uri })
    }
}

/// `http[s]://host:port/path`: never the query, where API keys and tokens live, because this is
/// what failure reasons name, and they reach the logs, the dead-letter queue and the dashboard.
impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = &self.uri;
        write!(
            f,
            "{}://{}:{}{}",
            self.scheme.as_str(),
            u.host().unwrap_or_default(), // an IPv6 address keeps its brackets
            u.port_u16().unwrap_or(self.scheme.default_port()),
            u.path()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_query() {
        let u: HttpUrl = "http://127.0.0.1:8080/hook?x=1".parse().unwrap();
        assert_eq!(u.uri().to_string(), "http://127.0.0.1:8080/hook?x=1");
        assert_eq!(
            u.to_string(),
            "http://127.0.0.1:8080/hook",
            "no query: it may hold a key"
        );
        let u: HttpUrl = "HTTP://example.com".parse().unwrap();
        assert_eq!(u.to_string(), "http://example.com:80/");
        assert_eq!(u.uri().to_string(), "http://example.com/");
        let u: HttpUrl = "http://[::1]:9000/a?b".parse().unwrap();
        assert_eq!(u.to_string(), "http://[::1]:9000/a");
        let u: HttpUrl = "http://h?q=1".parse().unwrap();
        assert_eq!(u.uri().to_string(), "http://h/?q=1");
        assert!("ftp://x".parse::<HttpUrl>().is_err());
        assert!("http://:80/".parse::<HttpUrl>().is_err());
        assert!("http://h:99999/".parse::<HttpUrl>().is_err());
        assert!("http://h/a b".parse::<HttpUrl>().is_err());
        let e = "http://u:hunter2@h/".parse::<HttpUrl>().unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = "http://h:99999/hook?api_key=SECRET"
            .parse::<HttpUrl>()
            .unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        let u: HttpUrl = "http://[::1]/a?k=SECRET#f".parse().unwrap();
        assert_eq!(u.to_string(), "http://[::1]:80/a");
    }

    #[test]
    fn https_urls_default_to_443() {
        let u: HttpUrl = "https://example.com/hook?token=SECRET".parse().unwrap();
        assert_eq!(u.scheme(), Scheme::Https);
        assert_eq!(u.to_string(), "https://example.com:443/hook");
        assert_eq!(u.uri().to_string(), "https://example.com/hook?token=SECRET");
    }
}
