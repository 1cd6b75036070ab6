// Pythia dashboard: polls the JSON API every few seconds and redraws numbers and SVG charts.
// No framework, no build step, nothing fetched from elsewhere. Text from Redis is only ever
// set with textContent or setAttribute, never parsed as HTML.
(function () {
  'use strict';

  var body = document.body;
  var page = body.getAttribute('data-page');
  var queue = body.getAttribute('data-queue');
  var interval = Number(body.getAttribute('data-interval-ms')) || 2000;
  var live = document.getElementById('live');
  var SVG = 'http://www.w3.org/2000/svg';

  // ---- formatting (the same as the server's) ----

  function num(v) { return typeof v === 'number' ? String(v) : '\u2013'; }
  function rate(v) {
    if (typeof v !== 'number') return '\u2013';
    return Math.abs(v) < 0.05 ? '0' : v.toFixed(1);
  }
  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function duration(secs) {
    if (typeof secs !== 'number' || !isFinite(secs) || secs < 0) return '\u2013';
    var s = Math.floor(secs);
    if (s === 0) return Math.floor(secs * 1000) + 'ms';
    if (s < 60) return (Math.floor(secs * 10) / 10).toFixed(1) + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + pad(s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h' + pad(Math.floor(s % 3600 / 60)) + 'm';
    return Math.floor(s / 86400) + 'd' + pad(Math.floor(s % 86400 / 3600)) + 'h';
  }
  function bytes(n) {
    if (typeof n !== 'number') return '\u2013';
    if (n < 1024) return n + ' B';
    var units = ['KiB', 'MiB', 'GiB', 'TiB'];
    var v = n / 1024, u = 0;
    while (v >= 1024 && u + 1 < units.length) { v /= 1024; u++; }
    return v.toFixed(1) + ' ' + units[u];
  }
  function memory(m) {
    if (!m || typeof m.queue !== 'number' || typeof m.pythia_keys !== 'number') return '\u2013';
    return bytes(m.queue + m.pythia_keys);
  }

  // ---- DOM helpers ----

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) if (attrs[k] !== undefined) e.setAttribute(k, attrs[k]);
    (children || []).forEach(function (c) {
      e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return e;
  }
  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setField(root, name, text) {
    var list = root.querySelectorAll('[data-f="' + name + '"]');
    for (var i = 0; i < list.length; i++) list[i].textContent = text;
  }
  // Where the dashboard is mounted ('' at the root of its server).
  var base = body.getAttribute('data-base') || '';
  function queuePath(q) { return base + '/queues/' + encodeURIComponent(q); }
  function apiPath(q) { return base + '/api/queues/' + encodeURIComponent(q); }

  // ---- charts ----

  // A round number at or above v: 1, 2, 5 times a power of ten.
  function niceMax(v) {
    if (v <= 1) return 1;
    var p = Math.pow(10, Math.floor(Math.log(v) / Math.LN10));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }
  function ago(ms) {
    var s = Math.round(ms / 1000);
    if (s < 60) return '-' + s + 's';
    return '-' + Math.floor(s / 60) + 'm' + (s % 60 ? pad(s % 60) + 's' : '');
  }

  // Lines of `series` ([{values, cls}]) over the times `t` (ms), with a y axis from 0.
  function drawChart(svg, t, series) {
    if (!svg) return;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var W = 600, H = 160, L = 48, R = 8, T = 10, B = 20;
    if (!t || t.length < 2) {
      svg.appendChild(svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', 'class': 'axis' },
        'collecting samples\u2026'));
      return;
    }
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v > max) max = v; }); });
    max = niceMax(max);
    var t0 = t[0], t1 = t[t.length - 1], span = Math.max(t1 - t0, 1);
    var x = function (ti) { return L + (W - L - R) * (ti - t0) / span; };
    var y = function (v) { return T + (H - T - B) * (1 - v / max); };
    [0, max / 2, max].forEach(function (v) {
      svg.appendChild(svgEl('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), 'class': 'gridline' }));
      svg.appendChild(svgEl('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', 'class': 'axis' },
        String(Math.round(v * 10) / 10)));
    });
    svg.appendChild(svgEl('text', { x: L, y: H - 4, 'class': 'axis' }, ago(span)));
    svg.appendChild(svgEl('text', { x: W - R, y: H - 4, 'text-anchor': 'end', 'class': 'axis' }, 'now'));
    series.forEach(function (s) {
      var pts = [];
      for (var i = 0; i < t.length && i < s.values.length; i++) {
        pts.push(x(t[i]).toFixed(1) + ',' + y(s.values[i]).toFixed(1));
      }
      svg.appendChild(svgEl('polyline', { points: pts.join(' '), 'class': 'line ' + s.cls }));
    });
    var last = series[0].values[series[0].values.length - 1];
    svg.setAttribute('data-last', String(last));
  }

  function drawSpark(svg, values, cls) {
    if (!svg) return;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (!values || values.length < 2) return;
    var W = 120, H = 28, max = 1;
    values.forEach(function (v) { if (v > max) max = v; });
    var pts = values.map(function (v, i) {
      return (W * i / (values.length - 1)).toFixed(1) + ',' + (H - 2 - (H - 4) * v / max).toFixed(1);
    });
    svg.appendChild(svgEl('polyline', { points: pts.join(' '), 'class': 'line ' + cls }));
  }

  // ---- polling ----

  function getJSON(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) {
        if (r.status === 404) return null;
        if (r.status === 401) { window.location.reload(); throw new Error('logged out'); }
        if (!r.ok) throw new Error(url + ': ' + r.status);
        return r.json();
      });
  }

  function every(fn) {
    var busy = false;
    function run() {
      if (busy) return;
      busy = true;
      Promise.resolve().then(fn).then(function () {
        live.classList.remove('stale');
        live.textContent = 'live';
      }, function () {
        live.classList.add('stale');
        live.textContent = 'no answer';
      }).then(function () { busy = false; });
    }
    run();
    setInterval(run, interval);
  }

  // ---- overview ----

  function overviewRow(q) {
    var path = queuePath(q.queue);
    var tr = el('tr', { 'data-queue': q.queue }, [
      el('td', null, [el('a', { href: path }, [q.queue]), el('span', { 'class': 'error', 'data-f': 'error' })]),
      el('td', { 'data-f': 'broker' }),
      el('td', { 'class': 'n', 'data-f': 'depth' }),
      el('td', { 'class': 'n', 'data-f': 'in_flight' }),
      el('td', { 'class': 'n', 'data-f': 'scheduled' }),
      el('td', { 'class': 'n' }, [el('a', { href: path + '/dlq', 'data-f': 'dead_letters' })]),
      el('td', { 'class': 'n', 'data-f': 'oldest_age_seconds' }),
      el('td', { 'class': 'n', 'data-f': 'consumers' }),
      el('td', { 'class': 'n', 'data-f': 'net_drain_per_second' }),
      el('td', { 'class': 'n', 'data-f': 'dead_lettered_per_second' }),
      el('td', { 'class': 'n', 'data-f': 'processed_per_second' }),
      el('td', { 'class': 'n', 'data-f': 'failed_per_second' }),
      el('td', { 'data-f': 'paused' }),
      el('td', null, [svgEl('svg', { 'class': 'spark', 'data-spark': 'depth', viewBox: '0 0 120 28' })]),
      el('td', null, [svgEl('svg', { 'class': 'spark', 'data-spark': 'dead_letters', viewBox: '0 0 120 28' })])
    ]);
    return tr;
  }

  function updateOverview(doc) {
    var tbody = document.querySelector('#queues tbody');
    var rows = {};
    Array.prototype.forEach.call(tbody.rows, function (r) { rows[r.getAttribute('data-queue')] = r; });
    var totals = {};
    doc.queues.forEach(function (q) {
      var row = rows[q.queue];
      if (!row) { row = overviewRow(q); tbody.appendChild(row); }
      setField(row, 'broker', q.broker || '\u2013');
      ['depth', 'in_flight', 'scheduled', 'dead_letters'].forEach(function (f) { setField(row, f, num(q[f])); });
      setField(row, 'oldest_age_seconds', duration(q.oldest_age_seconds));
      setField(row, 'consumers', q.consumers_alive + '/' + q.consumers);
      setField(row, 'net_drain_per_second', rate(q.net_drain_per_second));
      setField(row, 'dead_lettered_per_second', rate(q.dead_lettered_per_second));
      setField(row, 'processed_per_second', rate(q.processed_per_second));
      setField(row, 'failed_per_second', rate(q.failed_per_second));
      setField(row, 'paused', q.paused ? 'paused' : '\u2013');
      setField(row, 'error', q.error || '');
      var h = q.history;
      drawSpark(row.querySelector('[data-spark="depth"]'), h.depth, 's0');
      drawSpark(row.querySelector('[data-spark="dead_letters"]'), h.dead_letters, 's2');
      h.t_ms.forEach(function (t, i) {
        var s = totals[t] || (totals[t] = { depth: 0, in_flight: 0, dead: 0 });
        s.depth += h.depth[i]; s.in_flight += h.in_flight[i]; s.dead += h.dead_letters[i];
      });
    });
    var ts = Object.keys(totals).map(Number).sort(function (a, b) { return a - b; });
    var pick = function (f) { return ts.map(function (t) { return totals[t][f]; }); };
    drawChart(document.getElementById('chart-depth'), ts,
      [{ values: pick('depth'), cls: 's0' }, { values: pick('in_flight'), cls: 's1' }]);
    drawChart(document.getElementById('chart-dlq'), ts, [{ values: pick('dead'), cls: 's2' }]);
    setField(document, 'count', String(doc.queues.length));
    setField(document, 'sampled', doc.sampled_at_ms ? 'at ' + new Date(doc.sampled_at_ms).toLocaleTimeString() : 'not yet');
    var none = document.getElementById('no-queues');
    if (none) none.hidden = doc.queues.length > 0;
  }

  // ---- one queue ----

  function heartbeat(c) {
    if (c.alive === true) {
      return el('span', null, [el('span', { 'class': 'ok' }, ['alive']),
        typeof c.heartbeat_ttl_ms === 'number' ? ' (' + duration(c.heartbeat_ttl_ms / 1000) + ' left)' : ' (no expiry)']);
    }
    if (c.alive === false) {
      return el('span', null, [el('span', { 'class': 'bad' }, ['dead']),
        ' (heartbeat expired: its work goes back to the queue)']);
    }
    return el('span', { 'class': 'muted' }, ['not a Pythia consumer']);
  }

  function table(headers, rows) {
    var head = el('tr', null, headers.map(function (h) { return el('th', null, [h]); }));
    var tbody = el('tbody', null, rows.map(function (cells) {
      return el('tr', null, cells.map(function (c) {
        return typeof c === 'string' ? el('td', { 'class': 'n' }, [c]) : el('td', null, [c]);
      }));
    }));
    return el('table', { 'class': 'grid' }, [el('thead', null, [head]), tbody]);
  }

  function detail(r) {
    var out = [];
    if (r.broker === 'stream') {
      if (!r.groups.length) out.push(el('p', { 'class': 'empty' }, ['No consumer group yet.']));
      r.groups.forEach(function (g) {
        out.push(el('h2', null, ['Group ' + g.name]));
        out.push(el('p', { 'class': 'facts' }, [
          'lag ', el('b', null, [num(g.lag) + (g.lag_lower_bound ? '+' : '')]),
          ' \u00b7 pending ', el('b', null, [num(g.pending)]),
          ' \u00b7 last delivered ', el('code', null, [g.last_delivered_id || '\u2013']),
          ' \u00b7 oldest undelivered ', el('b', null, [duration(g.oldest_age_seconds)])]));
        if (!g.consumers.length) { out.push(el('p', { 'class': 'empty' }, ['No consumers.'])); return; }
        out.push(table(['Consumer', 'Pending', 'Idle', 'Heartbeat'], g.consumers.map(function (c) {
          return [el('span', null, [c.name]), num(c.pending),
            typeof c.idle_ms === 'number' ? duration(c.idle_ms / 1000) : '\u2013', heartbeat(c)];
        })));
      });
      return out;
    }
    out.push(el('h2', null, ['Consumers']));
    if (!r.consumers.length) {
      out.push(el('p', { 'class': 'empty' }, [r.broker === 'list'
        ? 'No consumers registered (the list broker keeps no in-flight state in Redis).'
        : 'No consumers registered.']));
      return out;
    }
    out.push(table(['Consumer', 'In flight', 'Staged', 'Heartbeat'], r.consumers.map(function (c) {
      return [el('span', null, [c.name]), num(c.in_flight), num(c.staged), heartbeat(c)];
    })));
    out.push(el('p', { 'class': 'muted' }, ['A list consumer has no idle time in Redis: its heartbeat key says whether it is alive.']));
    return out;
  }

  function drawHistory(h) {
    if (!h) return;
    var s = h.history;
    drawChart(document.getElementById('chart-depth'), s.t_ms, [
      { values: s.depth, cls: 's0' }, { values: s.in_flight, cls: 's1' }, { values: s.scheduled, cls: 's3' }]);
    drawChart(document.getElementById('chart-dlq'), s.t_ms, [{ values: s.dead_letters, cls: 's2' }]);
    setField(document, 'net_drain_per_second', rate(h.net_drain_per_second));
    setField(document, 'dead_lettered_per_second', rate(h.dead_lettered_per_second));
    setField(document, 'processed_per_second', rate(h.processed_per_second));
    setField(document, 'failed_per_second', rate(h.failed_per_second));
    setField(document, 'processed_today', num(h.processed_today));
    setField(document, 'failed_today', num(h.failed_today));
  }

  function updateQueue(r, h) {
    if (!r) return;
    ['length', 'depth', 'in_flight', 'scheduled', 'dead_letters'].forEach(function (f) {
      if (f in r) setField(document, f, num(r[f]));
    });
    setField(document, 'oldest_age_seconds', duration(r.oldest_age_seconds));
    setField(document, 'memory', memory(r.memory_bytes));
    var d = document.getElementById('detail');
    while (d.firstChild) d.removeChild(d.firstChild);
    detail(r).forEach(function (e) { d.appendChild(e); });
    drawHistory(h);
  }

  // ---- dead letters ----

  function updateDlq(h) {
    if (!h) return;
    var s = h.history;
    drawChart(document.getElementById('chart-dlq'), s.t_ms, [{ values: s.dead_letters, cls: 's2' }]);
    var total = document.querySelector('[data-f="total"]');
    var now = s.dead_letters[s.dead_letters.length - 1];
    if (total && typeof now === 'number' && String(now) !== total.getAttribute('data-total')) {
      total.textContent = String(now);
      document.getElementById('changed').hidden = false;
    }
  }

  if (page === 'overview') {
    every(function () { return getJSON(base + '/api/overview').then(updateOverview); });
  } else if (page === 'queue' && queue !== null) {
    every(function () {
      return Promise.all([getJSON(apiPath(queue)), getJSON(apiPath(queue) + '/history')])
        .then(function (both) { updateQueue(both[0], both[1]); });
    });
  } else if (page === 'dlq' && queue !== null) {
    every(function () { return getJSON(apiPath(queue) + '/history').then(updateDlq); });
  } else if (live) {
    live.hidden = true;
  }
})();
