//! The overview (`/`) and a queue's page (`/queues/<queue>`), from the sampler's documents
//! and the queue's [`QueueInspection`].

use std::time::Duration;

use maud::{Markup, html};
use pythia_redis::queues::QueueKind;
use pythia_redis::queues::inspect::{
    ConsumerReport, GroupInspection, Heartbeat, MemoryUsage, QueueInspection,
};

use super::{age, chart, layout, num, queue_url, rate};
use crate::App;
use crate::documents::{History, Overview, OverviewRow, kind};
use crate::format::{human_bytes, human_duration};

/// `/`: every queue.
pub(crate) fn overview_page(app: &App, doc: &Overview) -> String {
    let queues = &doc.queues;
    let c = html! {
        h1 { "Queues" }
        p.muted {
            span data-f="count" { (queues.len()) } " queue(s) under the prefix "
            code { (app.prefix) } ", sampled every " (app.sampler.interval().as_secs_f64())
            " s. Sampled " span data-f="sampled" { "–" } "."
        }
        @if let Some(e) = &doc.discovery_error {
            p.error { "Finding queues failed: " (e) }
        }
        @if let Some(n) = doc.queues_capped {
            p.error { "Only the first " (n) " queues are tracked." }
        }
        section.charts {
            (chart("chart-depth", "Backlog of all queues", &[("s0", "depth"), ("s1", "in flight")]))
            (chart("chart-dlq", "Dead letters of all queues", &[("s2", "dead letters")]))
        }
        table.grid #queues {
            thead { tr {
                th { "Queue" } th { "Kind" }
                th title="list: messages waiting; stream: entries not yet delivered to each group (lag), summed" { "Depth" }
                th title="list: held by consumers; stream: delivered, not acknowledged (pending)" { "In flight" }
                th title="retries waiting for their time" { "Retries" } th { "Dead letters" }
                th title="age of the next message to be delivered" { "Oldest" }
                th title="alive / all" { "Consumers" }
                th title="decrease of depth + in flight + retries per second over the last minute; negative: growing" { "Net drain /s" }
                th title="increase of the dead letters per second over the last minute" { "Dead-lettered /s" }
                th title="messages acknowledged per second over the last minute (the workers' daily counters)" { "Processed /s" }
                th title="messages dead-lettered per second over the last minute (the workers' daily counters)" { "Failed /s" }
                th title="a paused queue's workers fetch nothing" { "Paused" }
                th { "Depth, last minutes" } th { "Dead letters" }
            } }
            tbody { @for q in queues { (overview_row(app, q)) } }
        }
        p.empty #no-queues hidden[!queues.is_empty()] {
            "No queue found under the prefix " code { (app.prefix) } " yet. A queue shows up here \
             from its first message: every producer and worker writes it in the registry "
            code { "<prefix>:queues" } " (queues of older versions show once Pythia keeps a key \
             for them); name any other with " code { "--queue" } "."
        }
        section.note { h2 { "Circuit breakers" } p { (doc.circuit_breakers.note) } }
        section.note {
            h2 { "About these numbers" }
            p {
                "This dashboard samples what Redis holds and computes the rates itself, from the \
                 samples of the last minute (they start again when it restarts): "
                b { "processed" } " and " b { "failed" } " are how fast the daily counters the \
                 workers keep in Redis grow (acknowledged and dead-lettered messages; workers add \
                 their counts every 2 s, so the rates move in steps, and a worker run with "
                code { "--no-counters" } " adds nothing); " b { "net drain" } " is how fast the \
                 backlog (depth + in flight + retries) shrinks; it is negative while it grows, \
                 and it is not the processing rate when producers keep adding (each worker's "
                code { "/metrics" } " has " code { "pythia_messages_total" } "). "
                b { "Dead-lettered" } " is how fast the dead letters grow (replays and deletions \
                 are not subtracted)."
            }
        }
    };
    layout(app, "Queues", "overview", None, c)
}

fn overview_row(app: &App, q: &OverviewRow) -> Markup {
    let path = queue_url(app, &q.queue);
    html! {
        tr data-queue=(q.queue) {
            td { a href=(path) { (q.queue) } span.error data-f="error" { (q.error.as_deref().unwrap_or_default()) } }
            td data-f="broker" { (q.broker.map_or("–", QueueKind::as_str)) }
            td.n data-f="depth" { (num(q.depth)) }
            td.n data-f="in_flight" { (num(q.in_flight)) }
            td.n data-f="scheduled" { (num(q.scheduled)) }
            td.n { a href={ (path) "/dlq" } data-f="dead_letters" { (num(q.dead_letters)) } }
            td.n data-f="oldest_age_seconds" { (age(q.oldest_age_seconds)) }
            td.n data-f="consumers" { (q.consumers_alive) "/" (q.consumers) }
            td.n data-f="net_drain_per_second" { (rate(q.net_drain_per_second)) }
            td.n data-f="dead_lettered_per_second" { (rate(q.dead_lettered_per_second)) }
            td.n data-f="processed_per_second" title={ (num(q.processed_today)) " today" } { (rate(q.processed_per_second)) }
            td.n data-f="failed_per_second" title={ (num(q.failed_today)) " today" } { (rate(q.failed_per_second)) }
            td data-f="paused" { @if q.paused { "paused" } @else { "–" } }
            td { svg.spark data-spark="depth" viewBox="0 0 120 28" {} }
            td { svg.spark data-spark="dead_letters" viewBox="0 0 120 28" {} }
        }
    }
}

fn card(label: &str, field: &str, value: &str, title: &str) -> Markup {
    html! {
        div.card title=(title) { div.label { (label) } div.value data-f=(field) { (value) } }
    }
}

fn memory(m: Option<&MemoryUsage>) -> String {
    m.and_then(MemoryUsage::total)
        .map_or_else(|| "–".to_owned(), human_bytes)
}

fn heartbeat(h: Heartbeat) -> Markup {
    html! {
        @match h {
            Heartbeat::Alive(Some(left)) => { span.ok { "alive" } " (" (human_duration(left)) " left)" }
            Heartbeat::Alive(None) => { span.ok { "alive" } " (no expiry)" }
            Heartbeat::Dead => {
                span.bad { "dead" } " (heartbeat expired: its work goes back to the queue)"
            }
            _ => { span.muted { "not a Pythia consumer" } }
        }
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
    let path = queue_url(app, q);
    let stream = match r {
        QueueInspection::Stream(s) => Some(s),
        _ => None,
    };
    let rate_of = |f: fn(&History) -> Option<f64>| rate(rates.and_then(f));
    let (state, verb, act) = if paused {
        ("paused", "Resume", "resume")
    } else {
        ("running", "Pause", "pause")
    };
    let c = html! {
        nav.crumbs { a href=(app.url("/")) { "Queues" } " / " (q) }
        h1 { (q) " " span.kind { (kind(r).as_str()) } }
        (crate::job::lookup_form(app, q))
        section.cards {
            @if let Some(s) = stream {
                (card("Length", "length", &s.length.to_string(), "entries in the stream"))
            } @else {
                (card("Depth", "depth", &r.depth().to_string(), "messages waiting"))
                (card("In flight", "in_flight", &r.in_flight().to_string(), "held by consumers"))
                (card("Oldest message", "oldest_age_seconds", &age(r.oldest_age_seconds()),
                    "age of the next message to be delivered"))
            }
            (card("Retries scheduled", "scheduled", &r.scheduled().to_string(),
                "retries waiting for their time"))
            a.card.link href={ (path) "/dlq" } {
                div.label { "Dead letters" }
                div.value data-f="dead_letters" { (r.dead_letters()) }
            }
            (card("Memory", "memory", &memory(r.memory()),
                "MEMORY USAGE of the queue key and of Pythia's keys for it"))
            (card("Net drain /s", "net_drain_per_second", &rate_of(|h| h.net_drain_per_second),
                "decrease of the backlog per second over the last minute; negative: growing"))
            (card("Dead-lettered /s", "dead_lettered_per_second",
                &rate_of(|h| h.dead_lettered_per_second),
                "increase of the dead letters per second over the last minute"))
            (card("Processed /s", "processed_per_second", &rate_of(|h| h.processed_per_second),
                "messages acknowledged per second over the last minute (the workers' daily counters)"))
            (card("Failed /s", "failed_per_second", &rate_of(|h| h.failed_per_second),
                "messages dead-lettered per second over the last minute (the workers' daily counters)"))
            (card("Processed today", "processed_today",
                &num(rates.and_then(|h| h.processed_today)), "acknowledged since midnight UTC"))
            (card("Failed today", "failed_today", &num(rates.and_then(|h| h.failed_today)),
                "dead-lettered since midnight UTC"))
        }
        section.pause {
            form method="post" action={ (path) "/" (act) } class="actions" {
                "This queue is " b #pause-state { (state) } ". "
                input type="hidden" name="csrf" value=(app.security.csrf());
                button type="submit" #pause-toggle class="button" { (verb) }
            }
            p.muted {
                "A paused queue's workers, on every replica, stop fetching and keep settling \
                 what they hold (flag " code { (pythia_redis::QueueKeys::new(&app.prefix, q).paused()) } ")."
            }
        }
        section.charts {
            (chart(
                "chart-depth",
                if stream.is_some() { "Lag and pending (all groups)" } else { "Depth and in flight" },
                &[("s0", "depth"), ("s1", "in flight"), ("s3", "retries")],
            ))
            (chart("chart-dlq", "Dead letters", &[("s2", "dead letters")]))
        }
        section #detail { (queue_detail(r)) }
    };
    layout(app, q, "queue", Some(q), c)
}

/// The consumers (lists) or groups and their consumers (streams); the script rebuilds it.
fn queue_detail(r: &QueueInspection) -> Markup {
    if let QueueInspection::Stream(s) = r {
        return html! {
            @if s.groups.is_empty() { p.empty { "No consumer group yet." } }
            @for g in &s.groups { (group(g)) }
        };
    }
    let (consumers, plain_list) = match r {
        QueueInspection::List(l) => (l.consumers.as_slice(), l.broker == QueueKind::List),
        _ => (&[][..], false),
    };
    html! {
        h2 { "Consumers" }
        @if consumers.is_empty() {
            @if plain_list {
                p.empty { "No consumers registered (the list broker keeps no in-flight state in Redis)." }
            } @else {
                p.empty { "No consumers registered." }
            }
        } @else {
            (list_consumers(consumers))
        }
    }
}

fn group(g: &GroupInspection) -> Markup {
    html! {
        h2 { "Group " (g.name) }
        p.facts {
            "lag " b { (g.lag) @if g.lag_lower_bound { "+" } }
            " · pending " b { (g.pending) }
            " · last delivered " code { (g.last_delivered_id) }
            " · oldest undelivered " b { (age(g.oldest_age_seconds)) }
        }
        @if g.consumers.is_empty() {
            p.empty { "No consumers." }
        } @else {
            table.grid {
                thead { tr { th { "Consumer" } th { "Pending" } th { "Idle" } th { "Heartbeat" } } }
                tbody {
                    @for k in &g.consumers {
                        tr {
                            td { (k.name) }
                            td.n { (k.pending) }
                            td.n {
                                @match k.idle_ms {
                                    Some(ms) => (human_duration(Duration::from_millis(ms))),
                                    None => "–",
                                }
                            }
                            td { (heartbeat(k.heartbeat())) }
                        }
                    }
                }
            }
        }
    }
}

fn list_consumers(consumers: &[ConsumerReport]) -> Markup {
    html! {
        table.grid {
            thead { tr {
                th { "Consumer" } th title="messages it holds" { "In flight" }
                th title="moved by a blocking fetch, not yet recorded" { "Staged" } th { "Heartbeat" }
            } }
            tbody {
                @for k in consumers {
                    tr { td { (k.name) } td.n { (k.in_flight) } td.n { (k.staged) } td { (heartbeat(k.heartbeat())) } }
                }
            }
        }
        p.muted { "A list consumer has no idle time in Redis: its heartbeat key says whether it is alive." }
    }
}
