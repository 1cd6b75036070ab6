//! The overview (`/`) and a queue's page (`/queues/<queue>`), from the sampler's documents
//! and the queue's [`QueueInspection`].

use std::fmt::Write as _;
use std::time::Duration;

use pythia_redis::queues::QueueKind;
use pythia_redis::queues::inspect::{Heartbeat, MemoryUsage, QueueInspection};

use super::{age, chart, esc, layout, num, queue_path, rate};
use crate::App;
use crate::documents::{History, Overview, OverviewRow, kind};
use crate::format::{human_bytes, human_duration};

/// `/`: every queue.
pub(crate) fn overview_page(app: &App, doc: &Overview) -> String {
    let queues = &doc.queues;
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
    if let Some(e) = &doc.discovery_error {
        let _ = write!(
            c,
            "<p class=\"error\">Finding queues failed: {}</p>",
            esc(e)
        );
    }
    if let Some(n) = doc.queues_capped {
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
    for q in queues {
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
        esc(doc.circuit_breakers.note)
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

fn overview_row(q: &OverviewRow) -> String {
    let name = q.queue.as_str();
    let path = queue_path(name);
    let error = q
        .error
        .as_deref()
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
        broker = q.broker.map_or("–", QueueKind::as_str),
        depth = num(q.depth),
        inflight = num(q.in_flight),
        sched = num(q.scheduled),
        dead = num(q.dead_letters),
        oldest = age(q.oldest_age_seconds),
        alive = q.consumers_alive,
        all = q.consumers,
        drain = rate(q.net_drain_per_second),
        dl = rate(q.dead_lettered_per_second),
        pr = rate(q.processed_per_second),
        fr = rate(q.failed_per_second),
        pt = num(q.processed_today),
        ft = num(q.failed_today),
        paused = if q.paused { "paused" } else { "–" },
    )
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

fn memory(m: Option<&MemoryUsage>) -> String {
    m.and_then(MemoryUsage::total)
        .map_or_else(|| "–".to_owned(), human_bytes)
}

fn heartbeat(h: Heartbeat) -> String {
    match h {
        Heartbeat::Alive(Some(left)) => format!(
            "<span class=\"ok\">alive</span> ({} left)",
            human_duration(left)
        ),
        Heartbeat::Alive(None) => "<span class=\"ok\">alive</span> (no expiry)".to_owned(),
        Heartbeat::Dead => {
            "<span class=\"bad\">dead</span> (heartbeat expired: its work goes back to the queue)"
                .to_owned()
        }
        _ => "<span class=\"muted\">not a Pythia consumer</span>".to_owned(),
    }
}

/// `/queues/<queue>`: the `inspect` report, consumers and charts, the pause state and its
/// toggle (`paused`: the queue's flag as just read).
pub(crate) fn queue_page(
    app: &App,
    q: &str,
    r: &QueueInspection,
    rates: Option<&History>,
    paused: bool,
) -> String {
    let path = queue_path(q);
    let broker = kind(r).as_str();
    let mut c = String::new();
    let _ = write!(
        c,
        "<nav class=\"crumbs\"><a href=\"/\">Queues</a> / {}</nav><h1>{} <span class=\"kind\">{}</span></h1>",
        esc(q),
        esc(q),
        esc(broker)
    );
    c.push_str(&crate::job::lookup_form(q));
    c.push_str("<section class=\"cards\">");
    let stream = match r {
        QueueInspection::Stream(s) => Some(s),
        _ => None,
    };
    if let Some(s) = stream {
        c.push_str(&card(
            "Length",
            "length",
            s.length.to_string(),
            "entries in the stream",
        ));
    } else {
        c.push_str(&card(
            "Depth",
            "depth",
            r.depth().to_string(),
            "messages waiting",
        ));
        c.push_str(&card(
            "In flight",
            "in_flight",
            r.in_flight().to_string(),
            "held by consumers",
        ));
        c.push_str(&card(
            "Oldest message",
            "oldest_age_seconds",
            age(r.oldest_age_seconds()),
            "age of the next message to be delivered",
        ));
    }
    c.push_str(&card(
        "Retries scheduled",
        "scheduled",
        r.scheduled().to_string(),
        "retries waiting for their time",
    ));
    let _ = write!(
        c,
        "<a class=\"card link\" href=\"{path}/dlq\"><div class=\"label\">Dead letters</div>\
<div class=\"value\" data-f=\"dead_letters\">{}</div></a>",
        r.dead_letters()
    );
    c.push_str(&card(
        "Memory",
        "memory",
        memory(r.memory()),
        "MEMORY USAGE of the queue key and of Pythia's keys for it",
    ));
    c.push_str(&card(
        "Net drain /s",
        "net_drain_per_second",
        rate(rates.and_then(|h| h.net_drain_per_second)),
        "decrease of the backlog per second over the last minute; negative: growing",
    ));
    c.push_str(&card(
        "Dead-lettered /s",
        "dead_lettered_per_second",
        rate(rates.and_then(|h| h.dead_lettered_per_second)),
        "increase of the dead letters per second over the last minute",
    ));
    c.push_str(&card(
        "Processed /s",
        "processed_per_second",
        rate(rates.and_then(|h| h.processed_per_second)),
        "messages acknowledged per second over the last minute (the workers' daily counters)",
    ));
    c.push_str(&card(
        "Failed /s",
        "failed_per_second",
        rate(rates.and_then(|h| h.failed_per_second)),
        "messages dead-lettered per second over the last minute (the workers' daily counters)",
    ));
    c.push_str(&card(
        "Processed today",
        "processed_today",
        num(rates.and_then(|h| h.processed_today)),
        "acknowledged since midnight UTC",
    ));
    c.push_str(&card(
        "Failed today",
        "failed_today",
        num(rates.and_then(|h| h.failed_today)),
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
        key = esc(&pythia_redis::QueueKeys::new(&app.prefix, q).paused()),
    );
    c.push_str("<section class=\"charts\">");
    c.push_str(&chart(
        "chart-depth",
        if stream.is_some() {
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
fn queue_detail(r: &QueueInspection) -> String {
    let mut c = String::new();
    if let QueueInspection::Stream(s) = r {
        if s.groups.is_empty() {
            c.push_str("<p class=\"empty\">No consumer group yet.</p>");
        }
        for g in &s.groups {
            let lag = if g.lag_lower_bound {
                format!("{}+", g.lag)
            } else {
                g.lag.to_string()
            };
            let _ = write!(
                c,
                "<h2>Group {}</h2><p class=\"facts\">lag <b>{}</b> · pending <b>{}</b> · last delivered \
<code>{}</code> · oldest undelivered <b>{}</b></p>",
                esc(&g.name),
                esc(&lag),
                g.pending,
                esc(&g.last_delivered_id),
                age(g.oldest_age_seconds),
            );
            if g.consumers.is_empty() {
                c.push_str("<p class=\"empty\">No consumers.</p>");
                continue;
            }
            c.push_str(
                "<table class=\"grid\"><thead><tr><th>Consumer</th><th>Pending</th><th>Idle</th>\
<th>Heartbeat</th></tr></thead><tbody>",
            );
            for k in &g.consumers {
                let _ = write!(
                    c,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    esc(&k.name),
                    k.pending,
                    k.idle_ms
                        .map(|ms| human_duration(Duration::from_millis(ms)))
                        .unwrap_or_else(|| "–".to_owned()),
                    heartbeat(k.heartbeat())
                );
            }
            c.push_str("</tbody></table>");
        }
        return c;
    }
    c.push_str("<h2>Consumers</h2>");
    let (consumers, plain_list) = match r {
        QueueInspection::List(l) => (l.consumers.as_slice(), l.broker == QueueKind::List),
        _ => (&[][..], false),
    };
    if consumers.is_empty() {
        c.push_str(if plain_list {
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
    for k in consumers {
        let _ = write!(
            c,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&k.name),
            k.in_flight,
            k.staged,
            heartbeat(k.heartbeat())
        );
    }
    c.push_str(
        "</tbody></table><p class=\"muted\">A list consumer has no idle time in Redis: its heartbeat \
key says whether it is alive.</p>",
    );
    c
}
