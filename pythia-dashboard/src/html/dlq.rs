//! The dead-letter pages: `/queues/<queue>/dlq` (the newest dead letters, replay and delete)
//! and the confirmation step before a replay or delete.

use std::fmt::Write as _;
use std::time::SystemTime;

use pythia_redis::DeadLetter;

use super::{chart, enc, esc, layout, queue_path};
use crate::App;
use crate::api::{CONFIRM_PREVIEW, DeadLetterList, MAX_LIMIT, hex_preview, is_binary};
use crate::format::{human_duration, rfc3339};
use pythia_redis::queues::QueueKind;

/// What a finished replay or delete reports, from the query string of the redirect.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Notice {
    pub(super) replayed: Option<u64>,
    pub(super) missing: Option<u64>,
    pub(super) unheard: Option<u64>,
    pub(super) deleted: Option<u64>,
}

impl Notice {
    fn render(&self, q: &str) -> Option<String> {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        let mut parts = Vec::new();
        if let Some(n) = self.replayed {
            parts.push(format!(
                "Replayed {n} dead letter{} onto {} (attempt reset to 1).",
                plural(n),
                esc(q)
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
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// A body as the page shows it: its first `preview` characters escaped, or hex when binary.
fn body_cell(body: &[u8], preview: usize) -> String {
    let bytes = body.len();
    if is_binary(body) {
        return format!(
            "<code class=\"hex\">{}</code><span class=\"muted\"> binary, {bytes} bytes</span>",
            esc(&hex_preview(body))
        );
    }
    let body: String = String::from_utf8_lossy(body)
        .chars()
        .take(preview)
        .collect();
    let body = body.as_str();
    let cut = if body.len() < bytes {
        format!("<span class=\"muted\"> … {bytes} bytes</span>")
    } else {
        String::new()
    };
    format!("<code class=\"body\">{}</code>{cut}", esc(body))
}

/// `/queues/<queue>/dlq`: the newest dead letters with replay and delete.
pub(crate) fn dlq_page(
    app: &App,
    q: &str,
    doc: &DeadLetterList,
    notice: &Notice,
    limit: usize,
) -> String {
    let path = queue_path(q);
    let total = doc.total;
    let letters = &doc.letters;
    let mut c = String::new();
    let _ = write!(
        c,
        "<nav class=\"crumbs\"><a href=\"/\">Queues</a> / <a href=\"{path}\">{}</a> / dead letters</nav>\
<h1>Dead letters of {} <span class=\"kind\">{}</span></h1>",
        esc(q),
        esc(q),
        esc(doc.kind.map_or("queue", QueueKind::as_str))
    );
    if doc.kind.is_none() {
        c.push_str(&unknown_kind_note(q));
    }
    if let Some(n) = notice.render(q) {
        let _ = write!(c, "<p class=\"notice\" id=\"notice\">{n}</p>");
    }
    let _ = write!(
        c,
        "<p class=\"muted\"><b data-f=\"total\" data-total=\"{total}\">{total}</b> in <code>{}</code>{}. \
<span id=\"changed\" hidden>The dead letters changed: <a href=\"{path}/dlq\">reload</a>.</span></p>",
        esc(doc.dlq.key()),
        if total > letters.len() as u64 {
            format!(", the newest {} shown", letters.len())
        } else if total > 1 {
            ", newest first".to_owned()
        } else {
            String::new()
        }
    );
    c.push_str("<section class=\"charts single\">");
    c.push_str(&chart(
        "chart-dlq",
        "Dead letters",
        &[("s2", "dead letters")],
    ));
    c.push_str("</section>");
    if total > 0 {
        let _ = write!(
            c,
            "<p class=\"actions\"><a class=\"button\" href=\"{path}/dlq/confirm?action=replay\">Replay all {total}…</a> \
<a class=\"button danger\" href=\"{path}/dlq/confirm?action=delete\">Delete all {total}…</a></p>"
        );
    }
    if letters.is_empty() {
        c.push_str("<p class=\"empty\">No dead letters.</p>");
        return layout(app, &format!("Dead letters of {q}"), "dlq", Some(q), &c);
    }
    c.push_str(
        "<table class=\"grid\" id=\"dead-letters\"><thead><tr><th>Id</th><th>Attempts</th><th>Failed at</th>\
<th>Error</th><th>Body</th><th></th></tr></thead><tbody>",
    );
    for d in letters {
        c.push_str(&dlq_row(&path, d, doc.preview));
    }
    c.push_str("</tbody></table>");
    if total > letters.len() as u64 {
        let _ = write!(
            c,
            "<p class=\"muted\">Older dead letters are not shown: <a href=\"{path}/dlq?limit={}\">show more</a>, \
or use <code>pythia dlq list --limit N</code>.</p>",
            (limit * 2).min(MAX_LIMIT)
        );
    }
    layout(app, &format!("Dead letters of {q}"), "dlq", Some(q), &c)
}

fn dlq_row(path: &str, d: &DeadLetter, preview: usize) -> String {
    let id = d.location.entry_id().unwrap_or(d.message.id());
    let ago = d
        .failed_at
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|a| format!("<br><span class=\"muted\">{} ago</span>", human_duration(a)))
        .unwrap_or_default();
    let failed = d
        .failed_at
        .map(|t| format!("<time>{}</time>{ago}", esc(&rfc3339(t))))
        .unwrap_or_else(|| "–".to_owned());
    let error = d
        .reason
        .as_deref()
        .map(|e| format!("<code class=\"error\">{}</code>", esc(&cut(e, 300))))
        .unwrap_or_else(|| "–".to_owned());
    format!(
        "<tr data-id=\"{ida}\"><td><code>{idt}</code></td><td class=\"n\">{att}</td><td>{failed}</td>\
<td>{error}</td><td>{body}</td><td class=\"row-actions\">\
<a class=\"button small\" href=\"{path}/dlq/confirm?action=replay&amp;id={idq}\">Replay…</a> \
<a class=\"button small danger\" href=\"{path}/dlq/confirm?action=delete&amp;id={idq}\">Delete…</a></td></tr>",
        ida = esc(id),
        idt = esc(d.message.id()),
        idq = enc(id),
        att = d.message.attempt(),
        body = body_cell(d.message.body(), preview),
    )
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
fn unknown_kind_note(q: &str) -> String {
    format!(
        "<p class=\"warning\">There is no key <code>{q}</code>: a replay pushes onto the list \
<code>{q}</code>. If <code>{q}</code> is a pub/sub channel, replay with \
<code>pythia dlq replay --broker pubsub --queue {q}</code> instead.</p>",
        q = esc(q)
    )
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
    let path = queue_path(q);
    let verb = match action {
        Action::Replay => "Replay",
        Action::Delete => "Delete",
    };
    let mut c = String::new();
    let _ = write!(
        c,
        "<nav class=\"crumbs\"><a href=\"/\">Queues</a> / <a href=\"{path}\">{}</a> / \
<a href=\"{path}/dlq\">dead letters</a> / confirm</nav>",
        esc(q)
    );
    let what = match one {
        Some(d) => format!(
            "{} dead letter <code>{}</code> of <b>{}</b>?",
            verb,
            esc(d.message.id()),
            esc(q)
        ),
        None => format!(
            "{verb} all {total} dead letter{} of <b>{}</b>?",
            if total == 1 { "" } else { "s" },
            esc(q)
        ),
    };
    let _ = write!(c, "<h1 id=\"confirm-question\">{what}</h1>");
    if action == Action::Replay && !kind_known {
        c.push_str(&unknown_kind_note(q));
    }
    c.push_str(match action {
        Action::Replay => {
            "<p>Each message goes back on the queue with its attempt reset to 1, atomically: it \
leaves the dead letters only once it is back on the queue.</p>"
        }
        Action::Delete => "<p class=\"bad\">Deleted dead letters cannot be recovered.</p>",
    });
    if let Some(d) = one {
        let _ = write!(
            c,
            "<table class=\"grid facts-table\"><tbody><tr><th>Attempts</th><td>{}</td></tr>\
<tr><th>Failed at</th><td>{}</td></tr><tr><th>Error</th><td><code class=\"error\">{}</code></td></tr>\
<tr><th>Body</th><td>{}</td></tr></tbody></table>",
            d.message.attempt(),
            esc(&d.failed_at.map_or_else(|| "–".to_owned(), rfc3339)),
            esc(&cut(d.reason.as_deref().unwrap_or("–"), 1000)),
            body_cell(d.message.body(), CONFIRM_PREVIEW)
        );
    }
    let target = match one {
        Some(d) => format!(
            "<input type=\"hidden\" name=\"id\" value=\"{}\">",
            esc(d.location.entry_id().unwrap_or(d.message.id()))
        ),
        None => "<input type=\"hidden\" name=\"all\" value=\"1\">".to_owned(),
    };
    let _ = write!(
        c,
        "<form method=\"post\" action=\"{path}/dlq/{act}\" class=\"actions\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{target}\
<button type=\"submit\" id=\"confirm\" class=\"button{danger}\">{verb}</button> \
<a class=\"button secondary\" href=\"{path}/dlq\" id=\"cancel\">Cancel</a></form>",
        act = action.as_str(),
        csrf = esc(app.security.csrf()),
        danger = if action == Action::Delete {
            " danger"
        } else {
            ""
        },
    );
    layout(
        app,
        &format!("{verb} dead letters of {q}"),
        "confirm",
        Some(q),
        &c,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_escaped_or_hex() {
        assert_eq!(
            body_cell(b"<b>hi</b>", 200),
            "<code class=\"body\">&lt;b&gt;hi&lt;/b&gt;</code>"
        );
        let bin = body_cell(b"\xff\x00", 200);
        assert!(bin.contains("ff 00"), "{bin}");
        assert!(bin.contains("binary, 2 bytes"), "{bin}");
        let long = body_cell(&[b'a'; 100], 3);
        assert!(
            long.contains(">aaa<") && long.contains("100 bytes"),
            "{long}"
        );
        assert_eq!(cut("abcdef", 3), "abc…");
    }
}
