//! The dead-letter pages: `/queues/<queue>/dlq` (the newest dead letters, replay and delete)
//! and the confirmation step before a replay or delete.

use std::time::SystemTime;

use maud::{Markup, html};
use pythia_redis::DeadLetter;
use pythia_redis::queues::QueueKind;

use super::{chart, enc, layout, queue_url};
use crate::App;
use crate::api::{CONFIRM_PREVIEW, DeadLetterList, MAX_LIMIT, hex_preview, is_binary};
use crate::format::{human_duration, rfc3339};

/// What a finished replay or delete reports, from the query string of the redirect.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Notice {
    pub(super) replayed: Option<u64>,
    pub(super) missing: Option<u64>,
    pub(super) unheard: Option<u64>,
    pub(super) deleted: Option<u64>,
}

impl Notice {
    fn render(&self, q: &str) -> Option<Markup> {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        let mut parts: Vec<String> = Vec::new();
        if let Some(n) = self.replayed {
            parts.push(format!(
                "Replayed {n} dead letter{} onto {q} (attempt reset to 1).",
                plural(n)
            ));
        }
        if let Some(n) = self.deleted {
            parts.push(format!("Deleted {n} dead letter{}.", plural(n)));
        }
        if let Some(n) = self.missing.filter(|n| *n > 0) {
            parts.push(format!(
                "{n} were already gone (replayed or deleted meanwhile)."
            ));
        }
        if let Some(n) = self.unheard.filter(|n| *n > 0) {
            parts.push(format!(
                "{n} left in the dead letters: no subscriber received them."
            ));
        }
        (!parts.is_empty()).then(|| html! { (parts.join(" ")) })
    }
}

/// A body as the page shows it: its first `preview` characters as text, or hex when binary.
fn body_cell(body: &[u8], preview: usize) -> Markup {
    let bytes = body.len();
    if is_binary(body) {
        return html! {
            code.hex { (hex_preview(body)) } span.muted { " binary, " (bytes) " bytes" }
        };
    }
    let shown: String = String::from_utf8_lossy(body)
        .chars()
        .take(preview)
        .collect();
    html! {
        code.body { (shown) }
        @if shown.len() < bytes { span.muted { " … " (bytes) " bytes" } }
    }
}

/// `/queues/<queue>/dlq`: the newest dead letters with replay and delete.
pub(crate) fn dlq_page(
    app: &App,
    q: &str,
    doc: &DeadLetterList,
    notice: &Notice,
    limit: usize,
) -> String {
    let path = queue_url(app, q);
    let total = doc.total;
    let letters = &doc.letters;
    let c = html! {
        nav.crumbs { a href=(app.url("/")) { "Queues" } " / " a href=(path) { (q) } " / dead letters" }
        h1 { "Dead letters of " (q) " " span.kind { (doc.kind.map_or("queue", QueueKind::as_str)) } }
        @if doc.kind.is_none() { (unknown_kind_note(q)) }
        @if let Some(n) = notice.render(q) { p.notice #notice { (n) } }
        p.muted {
            b data-f="total" data-total=(total) { (total) } " in " code { (doc.dlq.key()) }
            @if total > letters.len() as u64 {
                ", the newest " (letters.len()) " shown"
            } @else if total > 1 {
                ", newest first"
            }
            ". "
            span #changed hidden { "The dead letters changed: " a href={ (path) "/dlq" } { "reload" } "." }
        }
        section.charts.single { (chart("chart-dlq", "Dead letters", &[("s2", "dead letters")])) }
        @if total > 0 {
            p.actions {
                a.button href={ (path) "/dlq/confirm?action=replay" } { "Replay all " (total) "…" }
                " "
                a.button.danger href={ (path) "/dlq/confirm?action=delete" } { "Delete all " (total) "…" }
            }
        }
        @if letters.is_empty() {
            p.empty { "No dead letters." }
        } @else {
            table.grid #dead-letters {
                thead { tr {
                    th { "Id" } th { "Attempts" } th { "Failed at" } th { "Error" } th { "Body" } th {}
                } }
                tbody { @for d in letters { (dlq_row(&path, d, doc.preview)) } }
            }
            @if total > letters.len() as u64 {
                p.muted {
                    "Older dead letters are not shown: "
                    a href={ (path) "/dlq?limit=" ((limit * 2).min(MAX_LIMIT)) } { "show more" }
                    ", or use " code { "pythia dlq list --limit N" } "."
                }
            }
        }
    };
    layout(app, &format!("Dead letters of {q}"), "dlq", Some(q), c)
}

fn dlq_row(path: &str, d: &DeadLetter, preview: usize) -> Markup {
    let id = d.location.entry_id().unwrap_or(d.message.id());
    let ago = d
        .failed_at
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    let confirm = |action: &str| format!("{path}/dlq/confirm?action={action}&id={}", enc(id));
    html! {
        tr data-id=(id) {
            td { code { (d.message.id()) } }
            td.n { (d.message.attempt()) }
            td {
                @if let Some(t) = d.failed_at {
                    time { (rfc3339(t)) }
                    @if let Some(a) = ago { br; span.muted { (human_duration(a)) " ago" } }
                } @else {
                    "–"
                }
            }
            td {
                @if let Some(e) = &d.reason { code.error { (cut(e, 300)) } } @else { "–" }
            }
            td { (body_cell(d.message.body(), preview)) }
            td.row-actions {
                a.button.small href=(confirm("replay")) { "Replay…" }
                " "
                a.button.small.danger href=(confirm("delete")) { "Delete…" }
            }
        }
    }
}

/// `s` cut to `max` characters (…).
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// Said where the queue key does not exist: a replay cannot tell a drained list from a channel.
fn unknown_kind_note(q: &str) -> Markup {
    html! {
        p.warning {
            "There is no key " code { (q) } ": a replay pushes onto the list " code { (q) }
            ". If " code { (q) } " is a pub/sub channel, replay with "
            code { "pythia dlq replay --broker pubsub --queue " (q) } " instead."
        }
    }
}

/// What a confirmation page is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Replay,
    Delete,
}

impl Action {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Delete => "delete",
        }
    }
}

/// The confirmation step before a replay or delete: the form that POSTs it.
pub(crate) fn confirm_page(
    app: &App,
    q: &str,
    action: Action,
    one: Option<&DeadLetter>,
    total: u64,
    kind_known: bool,
) -> String {
    let path = queue_url(app, q);
    let verb = match action {
        Action::Replay => "Replay",
        Action::Delete => "Delete",
    };
    let c = html! {
        nav.crumbs {
            a href=(app.url("/")) { "Queues" } " / " a href=(path) { (q) } " / "
            a href={ (path) "/dlq" } { "dead letters" } " / confirm"
        }
        h1 #confirm-question {
            @if let Some(d) = one {
                (verb) " dead letter " code { (d.message.id()) } " of " b { (q) } "?"
            } @else {
                (verb) " all " (total) " dead letter" @if total != 1 { "s" } " of " b { (q) } "?"
            }
        }
        @if action == Action::Replay && !kind_known { (unknown_kind_note(q)) }
        @match action {
            Action::Replay => p {
                "Each message goes back on the queue with its attempt reset to 1, atomically: it \
                 leaves the dead letters only once it is back on the queue."
            },
            Action::Delete => p.bad { "Deleted dead letters cannot be recovered." },
        }
        @if let Some(d) = one {
            table.grid.facts-table { tbody {
                tr { th { "Attempts" } td { (d.message.attempt()) } }
                tr { th { "Failed at" } td { (d.failed_at.map_or_else(|| "–".to_owned(), rfc3339)) } }
                tr { th { "Error" } td { code.error { (cut(d.reason.as_deref().unwrap_or("–"), 1000)) } } }
                tr { th { "Body" } td { (body_cell(d.message.body(), CONFIRM_PREVIEW)) } }
            } }
        }
        form method="post" action={ (path) "/dlq/" (action.as_str()) } class="actions" {
            input type="hidden" name="csrf" value=(app.security.csrf());
            @if let Some(d) = one {
                input type="hidden" name="id" value=(d.location.entry_id().unwrap_or(d.message.id()));
            } @else {
                input type="hidden" name="all" value="1";
            }
            button type="submit" #confirm class={ "button" @if action == Action::Delete { " danger" } } { (verb) }
            " "
            a.button.secondary href={ (path) "/dlq" } #cancel { "Cancel" }
        }
    };
    layout(
        app,
        &format!("{verb} dead letters of {q}"),
        "confirm",
        Some(q),
        c,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_escaped_or_hex() {
        assert_eq!(
            body_cell(b"<b>hi</b>", 200).into_string(),
            "<code class=\"body\">&lt;b&gt;hi&lt;/b&gt;</code>"
        );
        let bin = body_cell(b"\xff\x00", 200).into_string();
        assert!(bin.contains("ff 00"), "{bin}");
        assert!(bin.contains("binary, 2 bytes"), "{bin}");
        let long = body_cell(&[b'a'; 100], 3).into_string();
        assert!(
            long.contains(">aaa<") && long.contains("100 bytes"),
            "{long}"
        );
        assert_eq!(cut("abcdef", 3), "abc…");
    }
}
