// The Kiln console page's live part: polls the plugin's samples.json once a second, keeps the last five
// minutes, refreshes the page's figures and draws one line plot per canvas. Plain DOM and canvas, no library,
// nothing fetched from elsewhere; values are written with textContent only.
(function () {
  'use strict';
  var script = document.currentScript;
  // Absolute and without user info: a page opened as http://user:pass@host/... would otherwise resolve a
  // relative URL with the credentials in it, which fetch() refuses; the browser sends its cached login anyway.
  var url = new URL(script.getAttribute('data-samples'), window.location.href);
  url.username = '';
  url.password = '';
  var WINDOW_MS = 5 * 60 * 1000;
  // Columns of a sample row: [epochMillis, gen tok/s, prompt tok/s, ttft s, acceptance, kv usage, running, waiting]
  var charts = [
    { id: 'kiln-plot-throughput', column: 1, scale: 1, digits: 1, color: '#c0392b' },
    { id: 'kiln-plot-ttft', column: 3, scale: 1000, digits: 0, color: '#2471a3' },
    { id: 'kiln-plot-acceptance', column: 4, scale: 100, digits: 1, color: '#1e8449', max: 100 },
    { id: 'kiln-plot-kv', column: 5, scale: 100, digits: 1, color: '#b9770e', max: 100 }
  ];
  var rows = [];
  var last = 0;

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function update(data) {
    data.samples.forEach(function (row) {
      if (row[0] > last) { rows.push(row); last = row[0]; }
    });
    var horizon = last - WINDOW_MS;
    while (rows.length && rows[0][0] < horizon) rows.shift();
    Object.keys(data.fields).forEach(function (id) { setText(id, data.fields[id]); });
    charts.forEach(draw);
    setText('kiln-live-status', '');
  }

  function draw(chart) {
    var canvas = document.getElementById(chart.id);
    if (!canvas) return;
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth || 480, height = canvas.clientHeight || 160;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    var g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);

    var values = rows.map(function (r) { return r[chart.column] === null ? null : r[chart.column] * chart.scale; });
    var present = values.filter(function (v) { return v !== null; });
    var peak = present.length ? Math.max.apply(null, present) : 0;
    var top = chart.max || niceCeiling(peak);
    var left = 44, right = width - 8, upper = 8, lower = height - 20;
    var end = last || Date.now(), start = end - WINDOW_MS;

    g.strokeStyle = '#ddd'; g.fillStyle = '#666'; g.lineWidth = 1; g.font = '11px sans-serif';
    [0, 0.5, 1].forEach(function (f) {
      var y = lower - f * (lower - upper);
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      g.textAlign = 'right'; g.textBaseline = 'middle';
      g.fillText(format(top * f, chart.digits), left - 4, y);
    });
    g.textAlign = 'left'; g.textBaseline = 'top'; g.fillText('−5 min', left, lower + 4);
    g.textAlign = 'right'; g.fillText('now', right, lower + 4);

    g.strokeStyle = chart.color; g.fillStyle = chart.color; g.lineWidth = 2; g.beginPath();
    var drawing = false, points = 0;
    rows.forEach(function (r, i) {
      var v = values[i];
      if (v === null) { drawing = false; return; }
      var x = left + (r[0] - start) / WINDOW_MS * (right - left);
      var y = lower - Math.min(v, top) / top * (lower - upper);
      if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
      // A value between two gaps has no segment to draw: mark it with a dot.
      var next = i + 1 < values.length ? values[i + 1] : null;
      if (!drawing && next === null) g.fillRect(x - 1.5, y - 1.5, 3, 3);
      drawing = true; points++;
    });
    g.stroke();

    var latest = null;
    for (var i = values.length - 1; i >= 0; i--) if (values[i] !== null) { latest = values[i]; break; }
    canvas.setAttribute('data-points', String(points));
    canvas.setAttribute('data-peak', String(peak));
    setText(chart.id + '-value', latest === null ? '–' : 'now ' + format(latest, chart.digits) + ' ' +
        canvas.getAttribute('data-unit') + ' · peak ' + format(peak, chart.digits));
  }

  function niceCeiling(v) {
    if (v <= 0) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function format(v, digits) {
    return v.toFixed(v >= 100 ? 0 : digits);
  }

  function poll() {
    url.search = '?since=' + last;
    fetch(url.href, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(update)
      .catch(function (e) { setText('kiln-live-status', 'Live data unavailable: ' + e.message); })
      .finally(function () { setTimeout(poll, 1000); });
  }

  poll();
})();
