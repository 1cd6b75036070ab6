//! The pages, rendered on the server from the typed documents the API serves as JSON (the
//! queue's `QueueInspection`, the sampler's overview and history, the dead letters): the
//! frame and formatters here, the queue pages in [`queue`], the dead-letter pages in [`dlq`].
//!
//! The HTML is written with [`maud`]'s `html!`, checked at compile time, which escapes every
//! piece of text it is given (queue and consumer names, errors, bodies, headers from Redis);
//! bodies are cut and binary ones shown as hex. The pages load
//! one script and one style sheet from this server and nothing else: no inline script or
//! style, which the Content-Security-Policy would refuse anyway.

mod dlq;
mod queue;

use std::fmt::Write as _;

use maud::{DOCTYPE, Markup, html};

use super::App;
use crate::format::human_age;

pub(super) use dlq::{Action, Notice, confirm_page, dlq_page};
pub(super) use queue::{overview_page, queue_page};

/// `s` as one percent-encoded path segment or query value (only unreserved characters kept).
pub(super) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The path of a queue's page, from the dashboard's root.
pub(super) fn queue_path(q: &str) -> String {
    format!("/queues/{}", enc(q))
}

/// The URL of a queue's page: its path under the base path.
fn queue_url(app: &App, q: &str) -> String {
    app.url(&queue_path(q))
}

/// A number or `–`.
fn num(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_owned(), |n| n.to_string())
}

/// A rate per second, signed, or `–` while fewer than two samples exist.
fn rate(v: Option<f64>) -> String {
    v.map(|r| {
        if r.abs() < 0.05 {
            "0".to_owned()
        } else {
            format!("{r:.1}")
        }
    })
    .unwrap_or_else(|| "–".to_owned())
}

/// An age in seconds as `850ms`, `4m05s`…, or `–`.
fn age(seconds: Option<f64>) -> String {
    human_age(seconds).unwrap_or_else(|| "–".to_owned())
}

/// The frame of every page: the header names the Redis (password masked) and the prefix.
pub(super) fn layout(
    app: &App,
    title: &str,
    page: &str,
    queue: Option<&str>,
    content: Markup,
) -> String {
    let header = html! {
        span.where { (app.redis) " · prefix " code { (app.prefix) } }
        span.live #live title={ "refreshed every " (app.sampler.interval().as_secs_f64()) " s" } {
            "live"
        }
    };
    frame(app, title, page, queue, header, content)
}

/// The frame of the pages a stranger may see (login, refusals): nothing about the Redis.
fn bare_layout(app: &App, title: &str, page: &str, content: Markup) -> String {
    frame(app, title, page, None, html! {}, content)
}

fn frame(
    app: &App,
    title: &str,
    page: &str,
    queue: Option<&str>,
    header: Markup,
    content: Markup,
) -> String {
    let mut out = html! {
        (DOCTYPE)
        "\n"
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Pythia" }
                link rel="stylesheet" href=(app.url("/assets/dashboard.css"));
                script src=(app.url("/assets/dashboard.js")) defer {}
            }
            body data-page=(page) data-queue=[queue] data-interval-ms=(app.sampler.interval().as_millis()) data-base=(app.base) {
                header { a.brand href=(app.url("/")) { "Pythia" } (header) }
                main { (content) }
            }
        }
    }
    .into_string();
    out.push('\n');
    out
}

/// An empty chart the script draws into.
fn chart(id: &str, caption: &str, legend: &[(&str, &str)]) -> Markup {
    html! {
        figure.chart {
            figcaption {
                (caption)
                span.legend {
                    @for (class, name) in legend {
                        span class={ "key " (class) } { (name) }
                    }
                }
            }
            svg id=(id) viewBox="0 0 600 160" role="img" aria-label=(caption) {}
        }
    }
}

/// The 401 page: a form to log in with the token.
pub(super) fn login_page(app: &App, next: &str, message: &str) -> String {
    let next = if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    };
    let c = html! {
        h1 { "Log in" }
        p {
            (message) ". Give the token the dashboard was started with ("
            code { "--token" } " or " code { "PYTHIA_DASHBOARD_TOKEN" } ")."
        }
        form method="post" action=(app.url("/login")) class="login" {
            input type="hidden" name="next" value=(next);
            label { "Token " input type="password" name="token" autocomplete="current-password" autofocus; }
            " "
            button type="submit" class="button" { "Log in" }
        }
    };
    bare_layout(app, "Log in", "login", c)
}

/// A page that only says something (errors, refusals).
pub(super) fn message_page(app: &App, title: &str, message: &str) -> String {
    let c = html! {
        nav.crumbs { a href=(app.url("/")) { "Queues" } }
        h1 { (title) }
        p.error { (message) }
    };
    bare_layout(app, title, "message", c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let m = html! { p title=("\"'") { ("<script>alert('x')</script>&") } }.into_string();
        assert_eq!(
            m,
            "<p title=\"&quot;'\">&lt;script&gt;alert('x')&lt;/script&gt;&amp;</p>"
        );
        assert_eq!(enc("a b/{c}"), "a%20b%2F%7Bc%7D");
        assert_eq!(queue_path("jobs"), "/queues/jobs");
    }

    #[test]
    fn numbers() {
        assert_eq!(rate(Some(1.26)), "1.3");
        assert_eq!(rate(Some(-3.0)), "-3.0");
        assert_eq!(rate(Some(0.01)), "0");
        assert_eq!(rate(None), "–");
        assert_eq!(age(Some(245.0)), "4m05s");
        assert_eq!(age(Some(f64::NAN)), "–");
        assert_eq!(num(Some(3)), "3");
        assert_eq!(num(None), "–");
    }
}
