//! Who may use the dashboard, and what a browser may do with it.
//!
//! * **Host.** On a loopback address only requests whose `Host` names that address are served:
//!   a web page whose domain is rebound to 127.0.0.1 (DNS rebinding) gets 400.
//! * **Token** (`--token` / `PYTHIA_DASHBOARD_TOKEN`). Every request needs
//!   `Authorization: Bearer <token>` or the session cookie. A browser gets the cookie by opening
//!   any page with `?token=<token>` (redirected to the same page without it, however the name
//!   is percent-encoded) or through the login form. The cookie holds a random per-process
//!   session secret, never the token, and is `HttpOnly; SameSite=Lax`, its `Path` the base
//!   path (`/` without one): a restart logs everyone out. Without it: 401.
//! * **CSRF.** Every POST but the login needs this process's random CSRF token, in the header
//!   `X-CSRF-Token` or the form field `csrf` (the pages embed it), and a browser's `Origin`
//!   (else `Referer`) must be this server: 403 otherwise. A client that sends neither header is
//!   not a browser acting for someone else, and still needs the CSRF token.
//! * **Headers.** Every response carries a `Content-Security-Policy` that allows nothing but
//!   this server's own scripts, styles and images (no inline script, no framing),
//!   `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` and
//!   `Cache-Control: no-store`.
//!
//! Secrets are compared in constant time.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::{App, html};

/// The session cookie's name.
pub(super) const COOKIE: &str = "pythia_dashboard";
/// Largest POST body read to find the CSRF field (the forms send a few hundred bytes).
pub(super) const MAX_FORM: usize = 64 * 1024;

/// The policy of every response: only this server's own resources, no inline code, no frames.
const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The secrets and host rules of one dashboard process.
#[derive(Debug)]
pub(super) struct Security {
    token: Option<String>,
    session: String,
    csrf: String,
    /// `Host` values served; `None`: any (not a loopback address).
    hosts: Option<Vec<String>>,
}

impl Security {
    /// Fresh random secrets for a server on `addr` (when known), requiring `token` when given.
    pub(super) fn new(addr: Option<SocketAddr>, token: Option<String>) -> Result<Self, String> {
        Ok(Self {
            token,
            session: random_hex()?,
            csrf: random_hex()?,
            hosts: addr.and_then(loopback_hosts),
        })
    }

    /// The CSRF token the pages embed and every POST must carry.
    pub(super) fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether requests need the token.
    pub(super) fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `given` is the token (always false without one).
    pub(super) fn token_matches(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| ct_eq(t.as_bytes(), given.as_bytes()))
    }

    /// `Set-Cookie` of a logged-in browser, sent back on `path` and below it only (the base
    /// path the dashboard is mounted under, `/` at the root): a service that nests the dashboard
    /// does not get its session on its other routes.
    pub(super) fn session_cookie(&self, path: &str) -> String {
        format!(
            "{COOKIE}={}; Path={path}; HttpOnly; SameSite=Lax",
            self.session
        )
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        if self.token.is_none() {
            return true;
        }
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|t| self.token_matches(t.trim()));
        bearer
            || cookies(headers)
                .filter(|(name, _)| *name == COOKIE)
                .any(|(_, value)| ct_eq(value.as_bytes(), self.session.as_bytes()))
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(hosts) = &self.hosts else {
            return true;
        };
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }
}

/// The `Host` values of a loopback address (`None` for any other address: names unknown).
fn loopback_hosts(addr: SocketAddr) -> Option<Vec<String>> {
    if !addr.ip().is_loopback() {
        return None;
    }
    let port = addr.port();
    let mut names = vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "[::1]".to_owned(),
    ];
    let own = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    if !names.contains(&own) {
        names.push(own);
    }
    let mut hosts: Vec<String> = names.iter().map(|n| format!("{n}:{port}")).collect();
    if port == 80 {
        hosts.extend(names);
    }
    Some(hosts)
}

/// 32 random bytes from the operating system, as hex.
fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers from the OS: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equality whose time does not depend on where the inputs differ.
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `(name, value)` of every cookie of the request.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
}

/// Whether the browser's `Origin` (else `Referer`) is this server; true when it sent neither.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let ours = |origin: &str| {
        [format!("http://{host}"), format!("https://{host}")]
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().is_ok_and(ours);
    }
    if let Some(referer) = headers.get(header::REFERER) {
        let Ok(r) = referer.to_str() else {
            return false;
        };
        // scheme://host[:port] up to the path.
        let after_scheme = r.find("://").map_or(0, |i| i + 3);
        let end = r[after_scheme..]
            .find(['/', '?', '#'])
            .map_or(r.len(), |i| after_scheme + i);
        return ours(&r[..end]);
    }
    true
}

/// Whether a form body carries `csrf=<token>` (the token is hex: never percent-encoded).
fn form_has_csrf(body: &[u8], csrf: &str) -> bool {
    body.split(|b| *b == b'&')
        .filter_map(|kv| kv.strip_prefix(b"csrf="))
        .any(|v| ct_eq(v, csrf.as_bytes()))
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

/// A 401, 403 or 400 in the shape the client reads: JSON for the API, a page for browsers.
fn refuse(status: StatusCode, path: &str, message: &str, app: &App) -> Response {
    if is_api(path) {
        let mut r = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return r;
    }
    let page = if status == StatusCode::UNAUTHORIZED {
        html::login_page(app, path, message)
    } else {
        html::message_page(app, status.canonical_reason().unwrap_or("Refused"), message)
    };
    (status, axum::response::Html(page)).into_response()
}

/// The gate every request passes: host, token (or `?token=` login), and for POSTs the origin
/// and CSRF checks.
pub(super) async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let sec = &app.security;
    let path = req.uri().path().to_owned();
    if !sec.host_allowed(req.headers()) {
        return refuse(
            StatusCode::BAD_REQUEST,
            &path,
            "this dashboard only answers to its own address in the Host header",
            &app,
        );
    }
    let is_login = path == "/login";
    if sec.requires_token() && !is_login && !sec.authenticated(req.headers()) {
        if req.method() == Method::GET
            && let Some(query) = req.uri().query()
            && let Some(given) = query_value(query, "token")
        {
            if sec.token_matches(&given) {
                // Log in, and drop the token from the address bar and the history.
                let mut r = Redirect::to(&app.url(&without_token(&path, query))).into_response();
                if let Ok(v) = HeaderValue::from_str(&app.session_cookie()) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                return r;
            }
            return refuse(StatusCode::UNAUTHORIZED, &path, "wrong token", &app);
        }
        return refuse(
            StatusCode::UNAUTHORIZED,
            &path,
            "this dashboard needs its token",
            &app,
        );
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    if !same_origin(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            &path,
            "cross-origin request refused (Origin or Referer is not this server)",
            &app,
        );
    }
    if is_login {
        return next.run(req).await;
    }
    let header_ok = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| ct_eq(v.as_bytes(), sec.csrf().as_bytes()));
    if header_ok {
        return next.run(req).await;
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        let (parts, body) = req.into_parts();
        let bytes: Bytes = match axum::body::to_bytes(body, MAX_FORM).await {
            Ok(b) => b,
            Err(_) => {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &path,
                    "request body too large",
                    &app,
                );
            }
        };
        if form_has_csrf(&bytes, sec.csrf()) {
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
        }
    }
    refuse(
        StatusCode::FORBIDDEN,
        &path,
        "missing or wrong CSRF token (reload the page and try again)",
        &app,
    )
}

/// `path?query` without the `token` parameter, however its name is percent-encoded
/// (`%74oken=`): the name is decoded exactly as [`query_value`] decodes it. A parameter whose
/// name does not decode is dropped too.
fn without_token(path: &str, query: &str) -> String {
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && decoded_name(kv).is_some_and(|name| name != "token"))
        .collect();
    if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", rest.join("&"))
    }
}

/// The percent-decoded name of one `name=value` query parameter.
fn decoded_name(kv: &str) -> Option<String> {
    let uri: axum::http::Uri = format!("/?{kv}").parse().ok()?;
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).ok()?;
    pairs.into_iter().next().map(|(name, _)| name)
}

/// The percent-decoded value of `name` in a query string.
fn query_value(query: &str, name: &str) -> Option<String> {
    let uri: axum::http::Uri = format!("/?{query}").parse().ok()?;
    let axum::extract::Query(map) =
        axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(&uri)
            .ok()?;
    map.get(name).cloned()
}

/// Adds the security headers to every response.
pub(super) async fn headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn origins() {
        let host = (header::HOST, "127.0.0.1:9191");
        assert!(same_origin(&with(std::slice::from_ref(&host))));
        assert!(same_origin(&with(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:9191")
        ])));
        assert!(!same_origin(&with(&[
            host.clone(),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!same_origin(&with(&[
            host.clone(),
            (header::ORIGIN, "null")
        ])));
        assert!(same_origin(&with(&[
            host.clone(),
            (header::REFERER, "http://127.0.0.1:9191/queues/x/dlq")
        ])));
        assert!(!same_origin(&with(&[
            host.clone(),
            (header::REFERER, "http://127.0.0.1:9191.evil.example/")
        ])));
        assert!(!same_origin(&with(&[(header::ORIGIN, "http://x")])));
    }

    #[test]
    fn loopback_hosts_only() {
        let hosts = loopback_hosts("127.0.0.1:9191".parse().unwrap()).unwrap();
        assert!(hosts.contains(&"localhost:9191".to_owned()));
        assert!(!hosts.contains(&"localhost".to_owned()));
        assert!(loopback_hosts("0.0.0.0:9191".parse().unwrap()).is_none());
        let s = Security::new(Some("127.0.0.1:1".parse().unwrap()), None).unwrap();
        assert!(s.host_allowed(&with(&[(header::HOST, "LOCALHOST:1")])));
        assert!(!s.host_allowed(&with(&[(header::HOST, "rebound.example:1")])));
        assert!(!s.host_allowed(&HeaderMap::new()));
    }

    #[test]
    fn tokens_and_cookies() {
        let s = Security::new(Some("127.0.0.1:1".parse().unwrap()), Some("sekret".into())).unwrap();
        assert_ne!(s.csrf(), s.session);
        assert!(!s.authenticated(&HeaderMap::new()));
        assert!(s.authenticated(&with(&[(header::AUTHORIZATION, "Bearer sekret")])));
        assert!(!s.authenticated(&with(&[(header::AUTHORIZATION, "Bearer nope")])));
        let cookie = format!("a=b; {COOKIE}={}", s.session);
        assert!(s.authenticated(&with(&[(header::COOKIE, &cookie)])));
        assert!(!s.authenticated(&with(&[(header::COOKIE, "pythia_dashboard=sekret")])));
        assert!(s.session_cookie("/").contains("; Path=/; "));
        assert!(
            s.session_cookie("/ops/queues")
                .contains("; Path=/ops/queues; ")
        );
        assert!(form_has_csrf(
            format!("id=1&csrf={}", s.csrf()).as_bytes(),
            s.csrf()
        ));
        assert!(!form_has_csrf(b"id=1&csrf=", s.csrf()));
        assert_eq!(
            query_value("a=1&token=x%20y", "token").as_deref(),
            Some("x y")
        );
    }

    #[test]
    fn the_login_redirect_drops_the_token_however_it_is_encoded() {
        for query in [
            "token=s3cret&x=1",
            "%74oken=s3cret&x=1",
            "x=1&tok%65n=s3cret",
            "%74%6F%6B%65%6E=s3cret&x=1",
            "x=1&token=s3cret&token=s3cret",
        ] {
            // The login accepts each of these, so each must leave the address bar.
            assert_eq!(query_value(query, "token").as_deref(), Some("s3cret"));
            assert_eq!(without_token("/q", query), "/q?x=1", "{query}");
        }
        assert_eq!(without_token("/", "token=s3cret"), "/");
        assert_eq!(without_token("/", "tokens=1&a=%20"), "/?tokens=1&a=%20");
    }
}
