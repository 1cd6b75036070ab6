//! The pages, rendered on the server from the same JSON documents the API serves.
//!
//! Every piece of text that comes from Redis (queue and consumer names, errors, bodies,
//! headers) goes through [`esc`]; bodies are cut and binary ones shown as hex. The pages load
//! one script and one style sheet from this server and nothing else: no inline script or
//! style, which the Content-Security-Policy would refuse anyway.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value as Json;

use super::App;
use crate::commands::{human_bytes, human_duration};

/// `s` safe in HTML text and in quoted attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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

/// The path of a queue's page.
pub(super) fn queue_path(q: &str) -> String {
    format!("/queues/{}", enc(q))
}

/// A JSON number or `–`.
fn num(v: &Json) -> String {
    match v {
        Json::Number(n) => n.to_string(),
        _ => "–".to_owned(),
    }
}

/// A rate per second, signed, or `–` while fewer than two samples exist.
fn rate(v: &Json) -> String {
    v.as_f64()
        .map(|r| {
            if r.abs() < 0.05 {
                "0".to_owned()
            } else {
                format!("{r:.1}")
            }
        })
        .unwrap_or_else(|| "–".to_owned())
}

/// An age in seconds as `850ms`, `4m05s`…, or `–`.
fn age(v: &Json) -> String {
    v.as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| human_duration(Duration::from_secs_f64(s)))
        .unwrap_or_else(|| "–".to_owned())
}

/// The frame of every page: the header names the Redis (password masked) and the prefix.
pub(super) fn layout(
    app: &App,
    title: &str,
    page: &str,
    queue: Option<&str>,
    content: &str,
) -> String {
    let header = format!(
        "<span class=\"where\">{} · prefix <code>{}</code></span>\
<span class=\"live\" id=\"live\" title=\"refreshed every {} s\">live</span>",
        esc(&app.redis),
        esc(&app.prefix),
        app.sampler.interval().as_secs_f64(),
    );
    frame(app, title, page, queue, &header, content)
}

/// The frame of the pages a stranger may see (login, refusals): nothing about the Redis.
fn bare_layout(app: &App, title: &str, page: &str, content: &str) -> String {
    frame(app, title, page, None, "", content)
}

fn frame(
    app: &App,
    title: &str,
    page: &str,
    queue: Option<&str>,
    header: &str,
    content: &str,
) -> String {
    let queue_attr = queue
        .map(|q| format!(" data-queue=\"{}\"", esc(q)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · Pythia</title>\
<link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\
<script src=\"/assets/dashboard.js\" defer></script></head>\
<body data-page=\"{page}\"{queue_attr} data-interval-ms=\"{interval}\">\
<header><a class=\"brand\" href=\"/\">Pythia</a>{header}</header>\
<main>{content}</main></body></html>\n",
        title = esc(title),
        page = esc(page),
        interval = app.sampler.interval().as_millis(),
    )
}

/// An empty chart the script draws into.
fn chart(id: &str, caption: &str, legend: &[(&str, &str)]) -> String {
    let legend: String = legend
        .iter()
        .map(|(class, name)| format!("<span class=\"key {class}\">{}</span>", esc(name)))
        .collect();
    format!(
        "<figure class=\"chart\"><figcaption>{}<span class=\"legend\">{legend}</span></figcaption>\
<svg id=\"{id}\" viewBox=\"0 0 600 160\" role=\"img\" aria-label=\"{}\"></svg></figure>",
        esc(caption),
        esc(caption)
    )
}

/// `/`: every queue.
pub(super) fn overview_page(app: &App, doc: &Json) -> String {
    let queues = doc["queues"].as_array().cloned().unwrap_or_default();
    let mut c = String::new();
    c.push_str("<h1>Queues</h1>");
    let _ = write!(
        c,
        "<p class=\"muted\"><span data-f=\"count\">{}</span> queue(s) under the prefix <code>{}</code>, \
sampled every {} s. Sampled <span data-f=\"sampled\">–</span>.</p>",
        queues.len(),
        esc(&app.prefix),
        app.sampler.interval().as_secs_f64()
    );
    if let Some(e) = doc["discovery_error"].as_str() {
        let _ = write!(
            c,
            "<p class=\"error\">Finding queues failed: {}</p>",
            esc(e)
        );
    }
    if let Some(n) = doc["queues_capped"].as_u64() {
        let _ = write!(
            c,
            "<p class=\"error\">Only the first {n} queues are tracked.</p>"
        );
    }
    c.push_str("<section class=\"charts\">");
    c.push_str(&chart(
        "chart-depth",
        "Backlog of all queues",
        &[("s0", "depth"), ("s1", "in flight")],
    ));
    c.push_str(&chart(
        "chart-dlq",
        "Dead letters of all queues",
        &[("s2", "dead letters")],
    ));
    c.push_str("</section>");
    c.push_str(
        "<table class=\"grid\" id=\"queues\"><thead><tr><th>Queue</th><th>Kind</th>\
<th title=\"list: messages waiting; stream: entries not yet delivered to each group (lag), summed\">Depth</th>\
<th title=\"list: held by consumers; stream: delivered, not acknowledged (pending)\">In flight</th>\
<th title=\"retries waiting for their time\">Retries</th><th>Dead letters</th>\
<th title=\"age of the next message to be delivered\">Oldest</th><th title=\"alive / all\">Consumers</th>\
<th title=\"decrease of depth + in flight + retries per second over the last minute; negative: growing\">Net drain /s</th>\
<th title=\"increase of the dead letters per second over the last minute\">Dead-lettered /s</th>\
<th title=\"messages acknowledged per second over the last minute (the workers' daily counters)\">Processed /s</th>\
<th title=\"messages dead-lettered per second over the last minute (the workers' daily counters)\">Failed /s</th>\
<th title=\"a paused queue's workers fetch nothing\">Paused</th>\
<th>Depth, last minutes</th><th>Dead letters</th></tr></thead><tbody>",
    );
    for q in &queues {
        c.push_str(&overview_row(q));
    }
    c.push_str("</tbody></table>");
    let _ = write!(
        c,
        "<p class=\"empty\" id=\"no-queues\"{}>No queue found under the prefix <code>{}</code> yet. \
A queue shows up here from its first message: every producer and worker writes it in the registry \
<code>&lt;prefix&gt;:queues</code> (queues of older versions show once Pythia keeps a key for them); name \
any other with <code>--queue</code>.</p>",
        if queues.is_empty() { "" } else { " hidden" },
        esc(&app.prefix)
    );
    let _ = write!(
        c,
        "<section class=\"note\"><h2>Circuit breakers</h2><p>{}</p></section>",
        esc(doc["circuit_breakers"]["note"].as_str().unwrap_or_default())
    );
    c.push_str(
        "<section class=\"note\"><h2>About these numbers</h2><p>This dashboard samples what Redis \
holds and computes the rates itself, from the samples of the last minute (they start again when it \
restarts): <b>processed</b> and <b>failed</b> are how fast the daily counters the workers keep in \
Redis grow (acknowledged and dead-lettered messages; workers add their counts every 2 s, so the \
rates move in steps, and a worker run with <code>--no-counters</code> adds nothing); <b>net drain</b> is how fast the \
backlog (depth + in flight + retries) shrinks; it is negative while it grows, and it is not the \
processing rate when producers keep adding (each worker's <code>/metrics</code> has \
<code>pythia_messages_total</code>). <b>Dead-lettered</b> is how fast the dead letters grow \
(replays and deletions are not subtracted).</p></section>",
    );
    layout(app, "Queues", "overview", None, &c)
}

fn overview_row(q: &Json) -> String {
    let name = q["queue"].as_str().unwrap_or_default();
    let path = queue_path(name);
    let error = q["error"]
        .as_str()
        .map(|e| format!("<span class=\"error\" data-f=\"error\">{}</span>", esc(e)))
        .unwrap_or_else(|| "<span class=\"error\" data-f=\"error\"></span>".to_owned());
    format!(
        "<tr data-queue=\"{qa}\"><td><a href=\"{path}\">{qt}</a>{error}</td>\
<td data-f=\"broker\">{broker}</td><td class=\"n\" data-f=\"depth\">{depth}</td>\
<td class=\"n\" data-f=\"in_flight\">{inflight}</td><td class=\"n\" data-f=\"scheduled\">{sched}</td>\
<td class=\"n\"><a href=\"{path}/dlq\" data-f=\"dead_letters\">{dead}</a></td>\
<td class=\"n\" data-f=\"oldest_age_seconds\">{oldest}</td>\
<td class=\"n\" data-f=\"consumers\">{alive}/{all}</td>\
<td class=\"n\" data-f=\"net_drain_per_second\">{drain}</td>\
<td class=\"n\" data-f=\"dead_lettered_per_second\">{dl}</td>\
<td class=\"n\" data-f=\"processed_per_second\" title=\"{pt} today\">{pr}</td>\
<td class=\"n\" data-f=\"failed_per_second\" title=\"{ft} today\">{fr}</td>\
<td data-f=\"paused\">{paused}</td>\
<td><svg class=\"spark\" data-spark=\"depth\" viewBox=\"0 0 120 28\"></svg></td>\
<td><svg class=\"spark\" data-spark=\"dead_letters\" viewBox=\"0 0 120 28\"></svg></td></tr>",
        qa = esc(name),
        qt = esc(name),
        broker = esc(q["broker"].as_str().unwrap_or("–")),
        depth = num(&q["depth"]),
        inflight = num(&q["in_flight"]),
        sched = num(&q["scheduled"]),
        dead = num(&q["dead_letters"]),
        oldest = age(&q["oldest_age_seconds"]),
        alive = num(&q["consumers_alive"]),
        all = num(&q["consumers"]),
        drain = rate(&q["net_drain_per_second"]),
        dl = rate(&q["dead_lettered_per_second"]),
        pr = rate(&q["processed_per_second"]),
        fr = rate(&q["failed_per_second"]),
        pt = num(&q["processed_today"]),
        ft = num(&q["failed_today"]),
        paused = paused(&q["paused"]),
    )
}

/// `paused` or `–` (running) of a JSON bool.
fn paused(v: &Json) -> &'static str {
    if v.as_bool() == Some(true) {
        "paused"
    } else {
        "–"
    }
}

fn card(label: &str, field: &str, value: String, title: &str) -> String {
    format!(
        "<div class=\"card\" title=\"{}\"><div class=\"label\">{}</div><div class=\"value\" data-f=\"{}\">{}</div></div>",
        esc(title),
        esc(label),
        esc(field),
        esc(&value)
    )
}

fn memory(m: &Json) -> String {
    match (m["queue"].as_u64(), m["pythia_keys"].as_u64()) {
        (Some(q), Some(p)) => human_bytes(q + p),
        _ => "–".to_owned(),
    }
}

fn heartbeat(c: &Json) -> String {
    match (c["alive"].as_bool(), c["heartbeat_ttl_ms"].as_u64()) {
        (Some(true), Some(ms)) => format!(
            "<span class=\"ok\">alive</span> ({} left)",
            human_duration(Duration::from_millis(ms))
        ),
        (Some(true), None) => "<span class=\"ok\">alive</span> (no expiry)".to_owned(),
        (Some(false), _) => {
            "<span class=\"bad\">dead</span> (heartbeat expired: its work goes back to the queue)"
                .to_owned()
        }
        (None, _) => "<span class=\"muted\">not a Pythia consumer</span>".to_owned(),
    }
}

/// `/queues/<queue>`: the `inspect` report, consumers and charts, the pause state and its
/// toggle (`paused`: the queue's flag as just read).
pub(super) fn queue_page(app: &App, q: &str, r: &Json, rates: &Json, paused: bool) -> String {
    let path = queue_path(q);
    let broker = r["broker"].as_str().unwrap_or("list");
    let mut c = String::new();
    let _ = write!(
        c,
        "<nav class=\"crumbs\"><a href=\"/\">Queues</a> / {}</nav><h1>{} <span class=\"kind\">{}</span></h1>",
        esc(q),
        esc(q),
        esc(broker)
    );
    c.push_str(&super::job::lookup_form(q));
    c.push_str("<section class=\"cards\">");
    let stream = broker == "stream";
    if stream {
        c.push_str(&card(
            "Length",
            "length",
            num(&r["length"]),
            "entries in the stream",
        ));
    } else {
        c.push_str(&card(
            "Depth",
            "depth",
            num(&r["depth"]),
            "messages waiting",
        ));
        c.push_str(&card(
            "In flight",
            "in_flight",
            num(&r["in_flight"]),
            "held by consumers",
        ));
        c.push_str(&card(
            "Oldest message",
            "oldest_age_seconds",
            age(&r["oldest_age_seconds"]),
            "age of the next message to be delivered",
        ));
    }
    c.push_str(&card(
        "Retries scheduled",
        "scheduled",
        num(&r["scheduled"]),
        "retries waiting for their time",
    ));
    let _ = write!(
        c,
        "<a class=\"card link\" href=\"{path}/dlq\"><div class=\"label\">Dead letters</div>\
<div class=\"value\" data-f=\"dead_letters\">{}</div></a>",
        num(&r["dead_letters"])
    );
    c.push_str(&card(
        "Memory",
        "memory",
        memory(&r["memory_bytes"]),
        "MEMORY USAGE of the queue key and of Pythia's keys for it",
    ));
    c.push_str(&card(
        "Net drain /s",
        "net_drain_per_second",
        rate(&rates["net_drain_per_second"]),
        "decrease of the backlog per second over the last minute; negative: growing",
    ));
    c.push_str(&card(
        "Dead-lettered /s",
        "dead_lettered_per_second",
        rate(&rates["dead_lettered_per_second"]),
        "increase of the dead letters per second over the last minute",
    ));
    c.push_str(&card(
        "Processed /s",
        "processed_per_second",
        rate(&rates["processed_per_second"]),
        "messages acknowledged per second over the last minute (the workers' daily counters)",
    ));
    c.push_str(&card(
        "Failed /s",
        "failed_per_second",
        rate(&rates["failed_per_second"]),
        "messages dead-lettered per second over the last minute (the workers' daily counters)",
    ));
    c.push_str(&card(
        "Processed today",
        "processed_today",
        num(&rates["processed_today"]),
        "acknowledged since midnight UTC",
    ));
    c.push_str(&card(
        "Failed today",
        "failed_today",
        num(&rates["failed_today"]),
        "dead-lettered since midnight UTC",
    ));
    c.push_str("</section>");
    let (state, verb, act) = if paused {
        ("paused", "Resume", "resume")
    } else {
        ("running", "Pause", "pause")
    };
    let _ = write!(
        c,
        "<section class=\"pause\"><form method=\"post\" action=\"{path}/{act}\" class=\"actions\">\
This queue is <b id=\"pause-state\">{state}</b>. <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button type=\"submit\" id=\"pause-toggle\" class=\"button\">{verb}</button></form>\
<p class=\"muted\">A paused queue's workers, on every replica, stop fetching and keep settling what \
they hold (flag <code>{key}</code>).</p></section>",
        csrf = esc(app.security.csrf()),
        key = esc(&pythia::redis::QueueKeys::new(&app.prefix, q).paused()),
    );
    c.push_str("<section class=\"charts\">");
    c.push_str(&chart(
        "chart-depth",
        if stream {
            "Lag and pending (all groups)"
        } else {
            "Depth and in flight"
        },
        &[("s0", "depth"), ("s1", "in flight"), ("s3", "retries")],
    ));
    c.push_str(&chart(
        "chart-dlq",
        "Dead letters",
        &[("s2", "dead letters")],
    ));
    c.push_str("</section><section id=\"detail\">");
    c.push_str(&queue_detail(r));
    c.push_str("</section>");
    layout(app, q, "queue", Some(q), &c)
}

/// The consumers (lists) or groups and their consumers (streams); the script rebuilds it.
fn queue_detail(r: &Json) -> String {
    let mut c = String::new();
    if r["broker"] == "stream" {
        let groups = r["groups"].as_array().cloned().unwrap_or_default();
        if groups.is_empty() {
            c.push_str("<p class=\"empty\">No consumer group yet.</p>");
        }
        for g in &groups {
            let lag = if g["lag_lower_bound"] == true {
                format!("{}+", num(&g["lag"]))
            } else {
                num(&g["lag"])
            };
            let _ = write!(
                c,
                "<h2>Group {}</h2><p class=\"facts\">lag <b>{}</b> · pending <b>{}</b> · last delivered \
<code>{}</code> · oldest undelivered <b>{}</b></p>",
                esc(g["name"].as_str().unwrap_or_default()),
                esc(&lag),
                num(&g["pending"]),
                esc(g["last_delivered_id"].as_str().unwrap_or("–")),
                age(&g["oldest_age_seconds"]),
            );
            let consumers = g["consumers"].as_array().cloned().unwrap_or_default();
            if consumers.is_empty() {
                c.push_str("<p class=\"empty\">No consumers.</p>");
                continue;
            }
            c.push_str(
                "<table class=\"grid\"><thead><tr><th>Consumer</th><th>Pending</th><th>Idle</th>\
<th>Heartbeat</th></tr></thead><tbody>",
            );
            for k in &consumers {
                let _ = write!(
                    c,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    esc(k["name"].as_str().unwrap_or_default()),
                    num(&k["pending"]),
                    k["idle_ms"]
                        .as_u64()
                        .map(|ms| human_duration(Duration::from_millis(ms)))
                        .unwrap_or_else(|| "–".to_owned()),
                    heartbeat(k)
                );
            }
            c.push_str("</tbody></table>");
        }
        return c;
    }
    c.push_str("<h2>Consumers</h2>");
    let consumers = r["consumers"].as_array().cloned().unwrap_or_default();
    if consumers.is_empty() {
        c.push_str(if r["broker"] == "list" {
            "<p class=\"empty\">No consumers registered (the list broker keeps no in-flight state in Redis).</p>"
        } else {
            "<p class=\"empty\">No consumers registered.</p>"
        });
        return c;
    }
    c.push_str(
        "<table class=\"grid\"><thead><tr><th>Consumer</th><th title=\"messages it holds\">In flight</th>\
<th title=\"moved by a blocking fetch, not yet recorded\">Staged</th><th>Heartbeat</th></tr></thead><tbody>",
    );
    for k in &consumers {
        let _ = write!(
            c,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(k["name"].as_str().unwrap_or_default()),
            num(&k["in_flight"]),
            num(&k["staged"]),
            heartbeat(k)
        );
    }
    c.push_str(
        "</tbody></table><p class=\"muted\">A list consumer has no idle time in Redis: its heartbeat \
key says whether it is alive.</p>",
    );
    c
}

/// What a finished replay or delete reports, from the query string of the redirect.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Notice {
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

/// A body as the page shows it: escaped text, or hex when binary.
fn body_cell(d: &Json) -> String {
    let bytes = d["body_bytes"].as_u64().unwrap_or(0);
    if d["body_binary"] == true {
        return format!(
            "<code class=\"hex\">{}</code><span class=\"muted\"> binary, {bytes} bytes</span>",
            esc(d["body_hex"].as_str().unwrap_or_default())
        );
    }
    let body = d["body"].as_str().unwrap_or_default();
    let cut = if (body.len() as u64) < bytes {
        format!("<span class=\"muted\"> … {bytes} bytes</span>")
    } else {
        String::new()
    };
    format!("<code class=\"body\">{}</code>{cut}", esc(body))
}

/// `/queues/<queue>/dlq`: the newest dead letters with replay and delete.
pub(super) fn dlq_page(app: &App, q: &str, doc: &Json, notice: &Notice, limit: usize) -> String {
    let path = queue_path(q);
    let total = doc["total"].as_u64().unwrap_or(0);
    let letters = doc["dead_letters"].as_array().cloned().unwrap_or_default();
    let mut c = String::new();
    let _ = write!(
        c,
        "<nav class=\"crumbs\"><a href=\"/\">Queues</a> / <a href=\"{path}\">{}</a> / dead letters</nav>\
<h1>Dead letters of {} <span class=\"kind\">{}</span></h1>",
        esc(q),
        esc(q),
        esc(doc["broker"].as_str().unwrap_or("queue"))
    );
    if doc["broker"].is_null() {
        c.push_str(&unknown_kind_note(q));
    }
    if let Some(n) = notice.render(q) {
        let _ = write!(c, "<p class=\"notice\" id=\"notice\">{n}</p>");
    }
    let _ = write!(
        c,
        "<p class=\"muted\"><b data-f=\"total\" data-total=\"{total}\">{total}</b> in <code>{}</code>{}. \
<span id=\"changed\" hidden>The dead letters changed: <a href=\"{path}/dlq\">reload</a>.</span></p>",
        esc(doc["key"].as_str().unwrap_or_default()),
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
    for d in &letters {
        c.push_str(&dlq_row(&path, d));
    }
    c.push_str("</tbody></table>");
    if total > letters.len() as u64 {
        let _ = write!(
            c,
            "<p class=\"muted\">Older dead letters are not shown: <a href=\"{path}/dlq?limit={}\">show more</a>, \
or use <code>pythia dlq list --limit N</code>.</p>",
            (limit * 2).min(super::api::MAX_LIMIT)
        );
    }
    layout(app, &format!("Dead letters of {q}"), "dlq", Some(q), &c)
}

fn dlq_row(path: &str, d: &Json) -> String {
    let id = d["entry_id"]
        .as_str()
        .or(d["id"].as_str())
        .unwrap_or_default();
    let ago = d["failed_at_ms"]
        .as_u64()
        .and_then(|ms| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                .ok()
        })
        .map(|a| format!("<br><span class=\"muted\">{} ago</span>", human_duration(a)))
        .unwrap_or_default();
    let failed = d["failed_at"]
        .as_str()
        .map(|t| format!("<time>{}</time>{ago}", esc(t)))
        .unwrap_or_else(|| "–".to_owned());
    let error = d["error"]
        .as_str()
        .map(|e| format!("<code class=\"error\">{}</code>", esc(&cut(e, 300))))
        .unwrap_or_else(|| "–".to_owned());
    format!(
        "<tr data-id=\"{ida}\"><td><code>{idt}</code></td><td class=\"n\">{att}</td><td>{failed}</td>\
<td>{error}</td><td>{body}</td><td class=\"row-actions\">\
<a class=\"button small\" href=\"{path}/dlq/confirm?action=replay&amp;id={idq}\">Replay…</a> \
<a class=\"button small danger\" href=\"{path}/dlq/confirm?action=delete&amp;id={idq}\">Delete…</a></td></tr>",
        ida = esc(id),
        idt = esc(d["id"].as_str().unwrap_or_default()),
        idq = enc(id),
        att = num(&d["attempts"]),
        body = body_cell(d),
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
pub(super) enum Action {
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
pub(super) fn confirm_page(
    app: &App,
    q: &str,
    action: Action,
    one: Option<&Json>,
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
            esc(d["id"].as_str().unwrap_or_default()),
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
            num(&d["attempts"]),
            esc(d["failed_at"].as_str().unwrap_or("–")),
            esc(&cut(d["error"].as_str().unwrap_or("–"), 1000)),
            body_cell(d)
        );
    }
    let target = match one {
        Some(d) => format!(
            "<input type=\"hidden\" name=\"id\" value=\"{}\">",
            esc(d["entry_id"]
                .as_str()
                .or(d["id"].as_str())
                .unwrap_or_default())
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

/// The 401 page: a form to log in with the token.
pub(super) fn login_page(app: &App, next: &str, message: &str) -> String {
    let next = if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    };
    let c = format!(
        "<h1>Log in</h1><p>{}. Give the token the dashboard was started with (<code>--token</code> or \
<code>PYTHIA_DASHBOARD_TOKEN</code>).</p><form method=\"post\" action=\"/login\" class=\"login\">\
<input type=\"hidden\" name=\"next\" value=\"{}\"><label>Token <input type=\"password\" name=\"token\" \
autocomplete=\"current-password\" autofocus></label> <button type=\"submit\" class=\"button\">Log in</button></form>",
        esc(message),
        esc(next)
    );
    bare_layout(app, "Log in", "login", &c)
}

/// A page that only says something (errors, refusals).
pub(super) fn message_page(app: &App, title: &str, message: &str) -> String {
    let c = format!(
        "<nav class=\"crumbs\"><a href=\"/\">Queues</a></nav><h1>{}</h1><p class=\"error\">{}</p>",
        esc(title),
        esc(message)
    );
    bare_layout(app, title, "message", &c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(enc("a b/{c}"), "a%20b%2F%7Bc%7D");
        assert_eq!(queue_path("jobs"), "/queues/jobs");
        assert_eq!(cut("abcdef", 3), "abc…");
    }

    #[test]
    fn bodies_are_escaped_or_hex() {
        let text = json!({"body": "<b>hi</b>", "body_bytes": 9, "body_binary": false});
        assert_eq!(
            body_cell(&text),
            "<code class=\"body\">&lt;b&gt;hi&lt;/b&gt;</code>"
        );
        let bin = json!({"body": "?", "body_bytes": 2, "body_binary": true, "body_hex": "ff00"});
        assert!(body_cell(&bin).contains("ff00"));
        assert!(body_cell(&bin).contains("binary, 2 bytes"));
        let long = json!({"body": "abc", "body_bytes": 100, "body_binary": false});
        assert!(body_cell(&long).contains("100 bytes"));
    }

    #[test]
    fn numbers() {
        assert_eq!(rate(&json!(1.26)), "1.3");
        assert_eq!(rate(&json!(-3.0)), "-3.0");
        assert_eq!(rate(&json!(0.01)), "0");
        assert_eq!(rate(&Json::Null), "–");
        assert_eq!(age(&json!(245.0)), "4m05s");
        assert_eq!(num(&json!(3)), "3");
    }
}
