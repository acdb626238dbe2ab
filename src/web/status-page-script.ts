/**
 * The status page's script (served as /app.js). Plain ES2017 for any current browser.
 * Every name from the daemon goes into the page through textContent or an attribute set
 * with setAttribute, never through innerHTML.
 */
export const statusPageScript = String.raw`'use strict';
(function () {
  var hourMs = 3600 * 1000;
  var samplesMax = 3600;
  var colors = ['#0969da', '#cf222e', '#1a7f37', '#9a6700'];
  var state = { obs: null, history: {}, live: false, lastMs: 0 };

  function el(tag, props, children) {
    var e = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) {
      if (k === 'text') e.textContent = String(props[k]);
      else if (k === 'class') e.className = props[k];
      else e.setAttribute(k, String(props[k]));
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  function svg(tag, attrs) {
    var e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    return e;
  }

  function bytes(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var v = n, u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
    return (u === 0 ? String(Math.round(v)) : v.toFixed(1)) + ' ' + units[u];
  }

  function seconds(s) {
    if (s === null || s === undefined) return 'unknown';
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
    return (s / 3600).toFixed(1) + ' h';
  }

  function sum(o) {
    return Object.keys(o || {}).reduce(function (a, k) { return a + o[k]; }, 0);
  }

  function sampleOf(o, r) {
    var rate = r.ratesBytesPerS || {};
    return { tMs: o.timeMs, lagBytes: sum(r.lagBytes), lagS: r.lagS, writeBytesPerS: rate.write || 0, fetchBytesPerS: rate.fetch || 0, replayBytesPerS: rate.replay || 0, syncBytesPerS: rate.sync || 0 };
  }

  function addSamples(o) {
    o.resources.forEach(function (r) {
      var list = state.history[r.name] || (state.history[r.name] = []);
      if (list.length > 0 && list[list.length - 1].tMs >= o.timeMs) return;
      list.push(sampleOf(o, r));
      while (list.length > samplesMax || (list.length > 0 && list[0].tMs < o.timeMs - hourMs)) list.shift();
    });
  }

  function badge(text, kind) {
    return el('span', { class: 'badge ' + kind, text: text });
  }

  function plot(title, samples, series, format, testid) {
    var w = 560, h = 130, pad = 4;
    var nowMs = state.obs ? state.obs.timeMs : Date.now();
    // Up to the last hour: from the oldest sample kept (at least a minute back) to now.
    var fromMs = Math.min(nowMs - 60000, Math.max(nowMs - hourMs, samples.length > 0 ? samples[0].tMs : nowMs));
    var spanMs = nowMs - fromMs;
    var max = 0;
    samples.forEach(function (s) { series.forEach(function (k) { if (s[k.key] > max) max = s[k.key]; }); });
    var box = svg('svg', { width: w, height: h, viewBox: '0 0 ' + w + ' ' + h, role: 'img' });
    box.appendChild(svg('rect', { x: 0, y: 0, width: w, height: h, fill: '#fff', stroke: '#d0d7de' }));
    series.forEach(function (k, i) {
      var points = samples.filter(function (s) { return s[k.key] !== null && s[k.key] !== undefined; }).map(function (s) {
        var x = pad + ((s.tMs - fromMs) / spanMs) * (w - 2 * pad);
        var y = h - pad - (max > 0 ? (s[k.key] / max) * (h - 2 * pad) : 0);
        return x.toFixed(1) + ',' + y.toFixed(1);
      });
      box.appendChild(svg('polyline', { points: points.join(' '), fill: 'none', stroke: colors[i % colors.length], 'stroke-width': 1.5, 'data-series': k.key }));
    });
    var legend = el('div', { class: 'legend' }, series.map(function (k, i) {
      var last = samples.length > 0 ? samples[samples.length - 1][k.key] : 0;
      var s = el('span', { text: k.label + ': ' + format(last) });
      s.style.color = colors[i % colors.length];
      return s;
    }));
    return el('div', { class: 'plot', 'data-testid': testid }, [el('div', { class: 'title', text: title + ' (last ' + Math.round(spanMs / 60000) + ' min, max ' + format(max) + ')' }), box, legend]);
  }

  function bar(label, fraction, text) {
    var fill = el('div');
    fill.style.width = Math.max(0, Math.min(100, fraction * 100)).toFixed(1) + '%';
    return el('div', { class: 'row' }, [el('span', { class: 'label', text: label }), el('span', { class: 'bar', role: 'progressbar', 'aria-valuenow': Math.round(fraction * 100) }, [fill]), el('span', { text: ' ' + text })]);
  }

  function memberRow(m) {
    return el('tr', { 'data-peer': m.host }, [
      el('td', { text: m.host }),
      el('td', { text: m.role }),
      el('td', { text: m.diskState }),
      el('td', { text: m.replState }),
      el('td', {}, [m.reachable ? badge('reachable', 'ok') : badge('unreachable ' + m.unreachableS + ' s', 'bad')]),
      el('td', { text: m.emergency ? 'EMERGENCY' : '' }),
      el('td', { text: m.heldBackBytes > 0 ? bytes(m.heldBackBytes) : '' }),
    ]);
  }

  function resourceCard(r) {
    var lag = r.lagBytes || {};
    var facts = el('div', { class: 'facts' }, [
      el('span', { 'data-testid': 'role' }, [el('b', { text: 'role ' }), document.createTextNode(r.role)]),
      el('span', { 'data-testid': 'primary' }, [el('b', { text: 'primary ' }), document.createTextNode(r.primary)]),
      el('span', { 'data-testid': 'state' }, [el('b', { text: 'state ' }), document.createTextNode(r.state + (r.failure ? ' (' + r.failure + ')' : ''))]),
      el('span', { 'data-testid': 'lag' }, [el('b', { text: 'lag ' }), document.createTextNode(seconds(r.lagS) + ', ' + bytes(sum(lag)))]),
      el('span', {}, [el('b', { text: 'logs ' }), document.createTextNode(r.logFiles + ' (' + bytes(r.logBytes) + ')')]),
    ]);
    var flags = [];
    if (r.splitBrain) flags.push(badge('SPLIT BRAIN', 'bad'));
    if (r.emergency) flags.push(badge('EMERGENCY', 'bad'));
    var title = el('h2', {}, [document.createTextNode(r.name), badge(r.role, r.role === 'Primary' ? 'ok' : '')].concat(flags));
    var rows = [];
    if (r.sync) rows.push(bar('sync', r.sync.sizeBytes > 0 ? r.sync.doneBytes / r.sync.sizeBytes : 1, bytes(r.sync.doneBytes) + ' of ' + bytes(r.sync.sizeBytes) + ' (' + r.sync.state + ')'));
    ['writeback', 'fetch', 'replay'].forEach(function (stage) {
      if (lag[stage] === undefined) return;
      var rate = (r.ratesBytesPerS || {})[stage === 'writeback' ? 'write' : stage] || 0;
      var span = Math.max(lag[stage], rate * 10, 1);
      rows.push(bar(stage, 1 - lag[stage] / span, lag[stage] === 0 ? 'caught up' : bytes(lag[stage]) + ' behind'));
    });
    var table = el('table', { 'data-testid': 'members' }, [
      el('tr', {}, ['member', 'role', 'disk', 'replication', 'link', '', 'holds back'].map(function (t) { return el('th', { text: t }); })),
    ].concat(r.members.map(memberRow)));
    var samples = state.history[r.name] || [];
    var plots = el('div', { class: 'plots' }, [
      plot('Lag, seconds', samples, [{ key: 'lagS', label: 'lag' }], seconds, 'plot-lag-seconds'),
      plot('Lag, bytes', samples, [{ key: 'lagBytes', label: 'lag' }], bytes, 'plot-lag-bytes'),
      plot('Rates', samples, [{ key: 'writeBytesPerS', label: 'write' }, { key: 'fetchBytesPerS', label: 'fetch' }, { key: 'replayBytesPerS', label: 'replay' }, { key: 'syncBytesPerS', label: 'sync' }], function (v) { return bytes(v) + '/s'; }, 'plot-rates'),
    ]);
    return el('section', { class: 'resource', 'data-resource': r.name }, [title, facts, el('div', { class: 'bars' }, rows), table, plots]);
  }

  function render() {
    var o = state.obs;
    if (!o) return;
    document.getElementById('host').textContent = o.host;
    document.title = 'MARS ' + o.host;
    document.getElementById('updated').textContent = 'as of ' + new Date(o.timeMs).toLocaleTimeString();
    var live = document.getElementById('live');
    live.textContent = state.live ? 'live' : 'reconnecting';
    live.className = 'badge ' + (state.live ? 'ok' : 'down');
    var hosts = document.getElementById('hosts');
    hosts.replaceChildren.apply(hosts, o.hosts.map(function (h) {
      return el('li', { 'data-host': h.host, 'data-alive': h.alive ? '1' : '0' }, [document.createTextNode(h.host + ' ' + h.address + ' '), badge(h.alive ? 'alive' : 'unreachable', h.alive ? 'ok' : 'bad')]);
    }));
    document.getElementById('space').textContent = o.space ? 'log space: ' + bytes(o.space.freeBytes) + ' free of ' + bytes(o.space.sizeBytes) + ' (' + o.space.stage + ')' : '';
    var list = document.getElementById('resources');
    var cards = o.resources.map(resourceCard);
    if (cards.length === 0) cards.push(el('p', { text: 'no resources on this host' }));
    list.replaceChildren.apply(list, cards);
  }

  function accept(o) {
    state.obs = o;
    state.lastMs = Date.now();
    addSamples(o);
    render();
  }

  function getJson(path) {
    return fetch(path, { cache: 'no-store' }).then(function (res) {
      if (!res.ok) throw new Error(path + ': ' + res.status);
      return res.json();
    });
  }

  function poll() {
    if (state.live && Date.now() - state.lastMs < 5000) return;
    getJson('/api/status').then(accept, function () { state.live = false; render(); });
  }

  function follow() {
    if (!window.EventSource) return;
    var es = new EventSource('/api/events');
    es.onopen = function () { state.live = true; render(); };
    es.onmessage = function (e) { state.live = true; accept(JSON.parse(e.data)); };
    es.onerror = function () { state.live = false; render(); };
  }

  getJson('/api/history').then(function (h) { state.history = h || {}; }, function () { return undefined; }).then(function () {
    return getJson('/api/status').then(accept, function () { return undefined; });
  }).then(function () {
    follow();
    setInterval(poll, 2000);
  });
})();
`;
