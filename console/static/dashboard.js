// Live dashboard: history on connect (the server's, across relaunches), then batches of step
// reports over Socket.IO. Charts run against wall-clock time; the step shows on hover.
(function () {
  "use strict";
  const SMOOTHING = 0.9; // exponential moving average weight for the smoothed curves
  const STALE_S = 5; // no report for this long while training: the rank rows turn red
  const MAX_POINTS = 4000; // per curve: thinned to every other point beyond (bounded memory)
  const $ = (id) => document.getElementById(id);
  const modelName = document.body.dataset.modelName;

  // The token comes from ?token=... (the link printed at start) or the field; kept locally.
  const urlToken = new URLSearchParams(location.search).get("token");
  if (urlToken) localStorage.setItem("hvd-online-token", urlToken);
  $("token").value = localStorage.getItem("hvd-online-token") || "";
  $("token").addEventListener("change", () => localStorage.setItem("hvd-online-token", $("token").value));

  const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  const fmt = (v, digits = 0) => (v === null || v === undefined ? "-" :
    Number(v).toLocaleString(undefined, { maximumFractionDigits: digits }));
  function duration(s) {
    if (s === null || s === undefined) return "-";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 120) return s.toFixed(1) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  // dataset specs: {label, color, width} lines, or {label, color, marker: pointStyle} points
  function lineChart(id, specs, extra = {}) {
    return new Chart($(id), {
      type: "line",
      data: { datasets: specs.map((s) => (s.marker ? {
        label: s.label, data: [], showLine: false, pointRadius: 7, pointStyle: s.marker,
        backgroundColor: s.color, borderColor: s.color, legendWhenEmpty: false } : {
        label: s.label, data: [], pointRadius: 0, borderWidth: s.width || 1.5,
        borderColor: s.color, backgroundColor: s.color, yAxisID: s.axis || "y" })) },
      options: { animation: false, parsing: false, normalized: true, maintainAspectRatio: false,
        scales: { x: { type: "linear", ticks: { callback: (v) => clock(v), maxTicksLimit: 6 } },
          ...extra },
        plugins: {
          tooltip: { callbacks: { title: (items) => (items.length ?
            (items[0].raw.step !== undefined ? "step " + items[0].raw.step + " · " : "") + clock(items[0].raw.x) : "") } },
          legend: { labels: { filter: (item, data) => {
            const d = data.datasets[item.datasetIndex];
            return !d.off && (d.legendWhenEmpty !== false || d.data.length > 0);
          } } } } },
    });
  }
  function barChart(id, labels) {
    return new Chart($(id), {
      type: "bar",
      data: { labels: [], datasets: labels.map((label) => ({ label, data: [] })) },
      options: { animation: false, maintainAspectRatio: false },
    });
  }
  const GREY = "#9ab", BLUE = "#2a5db0";
  const charts = {
    // loss datasets by index: 0 raw, 1 smoothed, 2 drift marks, 3 challenger, 4-6 markers
    loss: lineChart("loss-chart", [{ label: "loss", color: GREY, width: 1 },
      { label: "smoothed", color: BLUE, width: 2 },
      { label: "drift / response", color: "#d22", marker: "triangle" },
      { label: "challenger loss", color: "#e80" },
      { label: "checkpoint", color: "#555", marker: "rectRot" },
      { label: "serving version", color: "#2a2", marker: "circle" },
      { label: "relaunch", color: "#a2a", marker: "crossRot" }]),
    metric: lineChart("metric-chart", [{ label: "metric", color: GREY, width: 1 },
      { label: "smoothed", color: BLUE, width: 2 }]),
    freshness: lineChart("freshness-chart", [{ label: "p50", color: BLUE },
      { label: "p99", color: "#c33" }]),
    rate: lineChart("rate-chart", [{ label: "samples/s", color: BLUE }]),
    predict: lineChart("predict-chart", [{ label: "predictions/s", color: GREY, axis: "y" },
      { label: "p50 (ms)", color: BLUE, axis: "ms" }, { label: "p99 (ms)", color: "#c33", axis: "ms" }],
      { y: { position: "left", title: { display: true, text: "per s" } },
        ms: { position: "right", title: { display: true, text: "ms" }, grid: { drawOnChartArea: false } } }),
    dlq: lineChart("dlq-chart", []),
    backlog: barChart("backlog-chart", ["waiting (messages)", "lag (ms)"]),
    delayed: lineChart("delayed-chart", [{ label: "delayed loss", color: GREY },
      { label: "delayed metric", color: BLUE }]),
    delays: barChart("delay-chart", ["joined pairs"]),
  };
  const ema = {};
  let joinSeen = null; // {t, counts} of the previous update, for the rates
  let lastReportAt = Date.now(), connected = false, status = "connecting", lastPredictAt = 0;
  window.hvdConsole = { charts, received: 0, snapshot: null };

  function push(dataset, point) {
    // reports queued before the page connected are in its history already: time only moves on
    const last = dataset.data[dataset.data.length - 1];
    if (last && point.x <= last.x) return;
    dataset.data.push(point);
    if (dataset.data.length > MAX_POINTS) dataset.data = dataset.data.filter((_, i) => i % 2 === 0);
  }
  function smooth(key, value) {
    ema[key] = ema[key] === undefined ? value : SMOOTHING * ema[key] + (1 - SMOOTHING) * value;
    return ema[key];
  }
  const DLQ_COLORS = ["#c33", "#e80", "#a2a", "#2a2", "#555"];
  let lastElapsed = null;
  function addPoint(p) {
    if (!p.time_s) return; // a report from before the time axis existed
    const at = { x: p.time_s, step: p.step };
    if (lastElapsed !== null && p.elapsed_s < lastElapsed) { // a relaunch: break the lines
      for (const c of [charts.loss, charts.metric, charts.freshness, charts.rate, charts.delayed]) {
        c.data.datasets.forEach((d) => { if (d.showLine !== false) push(d, { x: p.time_s - 0.01, y: null }); });
      }
    }
    if (p.elapsed_s !== undefined && p.elapsed_s !== null) lastElapsed = p.elapsed_s;
    for (const key of ["loss", "metric"]) {
      const value = p[key];
      if (value === null || value === undefined) continue;
      push(charts[key].data.datasets[0], { ...at, y: value });
      push(charts[key].data.datasets[1], { ...at, y: smooth(key, value) });
    }
    if (p.challenger_loss !== null && p.challenger_loss !== undefined) {
      push(charts.loss.data.datasets[3], { ...at, y: p.challenger_loss });
    }
    ["delayed_loss", "delayed_metric"].forEach((key, i) => {
      const value = p[key];
      if (value === null || value === undefined) return;
      push(charts.delayed.data.datasets[i], { ...at, y: smooth(key, value) });
    });
    if (p.samples_per_s !== undefined) push(charts.rate.data.datasets[0], { ...at, y: p.samples_per_s });
    const p50 = p.rank_freshness_p50_ms, p99 = p.rank_freshness_p99_ms;
    if (p50 && p50.length && p.count && Math.max(...p99) > 0) { // 0: no window trained yet
      push(charts.freshness.data.datasets[0], { ...at, y: Math.max(...p50) });
      push(charts.freshness.data.datasets[1], { ...at, y: Math.max(...p99) });
    }
    for (const [reason, total] of Object.entries(p.rejected_by_reason || {})) {
      $("dlq-none").hidden = true;
      let d = charts.dlq.data.datasets.find((s) => s.label === reason);
      if (!d) {
        const color = DLQ_COLORS[charts.dlq.data.datasets.length % DLQ_COLORS.length];
        d = { label: reason, data: [], pointRadius: 0, borderWidth: 1.5, borderColor: color, backgroundColor: color, stepped: true };
        charts.dlq.data.datasets.push(d);
      }
      push(d, { ...at, y: total });
    }
  }
  // the smoothed loss at time t (markers sit on the curve)
  function lossAt(t) {
    const data = charts.loss.data.datasets[1].data;
    if (!data.length) return 0;
    let lo = 0, hi = data.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (data[mid].x < t) lo = mid + 1; else hi = mid; }
    return data[lo].y;
  }
  function showMarkers(markers) {
    const index = { drift: 2, checkpoint: 4, serving: 5, restart: 6 };
    for (const i of Object.values(index)) charts.loss.data.datasets[i].data = [];
    for (const m of markers || []) {
      if (!m.time_s) continue;
      charts.loss.data.datasets[index[m.kind]].data.push({ x: m.time_s, y: lossAt(m.time_s), step: m.step, label: m.label });
    }
  }
  function showFeatures(f) {
    document.querySelectorAll(".feature-drift").forEach((e) => (e.hidden = !f.drift));
    charts.loss.data.datasets[2].off = !f.drift;
    charts.loss.data.datasets[3].off = !f.challenger;
    $("join-panel").hidden = !f.join;
    document.querySelectorAll(".join-figure").forEach((e) => (e.hidden = !f.join));
    $("tables-panel").hidden = !f.tables;
  }
  function showHeader(s) {
    const h = s.header, r = s.latest || {};
    status = h.status;
    $("status").textContent = h.status;
    $("status").className = "badge " + h.status;
    $("uptime").textContent = duration(h.uptime_s);
    $("samples").textContent = fmt(h.samples_total);
    $("rate").textContent = fmt(r.samples_per_s);
    $("lag").textContent = duration(h.lag_s);
    $("freshness").textContent = h.freshness_p99_ms === null ? "-" : fmt(h.freshness_p99_ms) + " ms";
    $("version").textContent = h.serving_version ? "step " + fmt(h.serving_version) : "none yet";
    $("rejected").textContent = fmt(r.rejected_total || 0);
    if (s.last_checkpoint) {
      $("last-checkpoint").textContent = "step " + s.last_checkpoint.step + ": " + s.last_checkpoint.path;
    }
    if (h.status === "stopped") message("training stopped", false);
    const action = (s.markers || []).filter((m) => m.kind === "drift").pop();
    if (action) $("drift-action").textContent = `${action.label} at step ${action.step}`;
  }
  function showRanks(s) {
    const rows = (s.ranks || []).map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.rank = r.rank;
      if (r.lagging) tr.classList.add("lagging");
      const cells = [r.rank, r.host || "-", fmt(r.rss_mb), fmt(r.cpu_percent), fmt(s.steps_per_s, 1),
        fmt(r.step_ms, 1), fmt(r.freshness_p99_ms), r.partitions.join(", "), fmt(r.backlog)];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    });
    $("ranks-body").replaceChildren(...rows);
    markStale();
  }
  // a rank that stops reporting (killed, hung, its host cut off) stops every report in
  // lockstep: after STALE_S without one, or with the console gone, every row turns red
  function markStale() {
    const silent = (Date.now() - lastReportAt) / 1000;
    const stale = (!connected || silent > STALE_S) && status !== "stopped";
    document.querySelectorAll("#ranks-body tr").forEach((tr) => tr.classList.toggle("stale", stale));
    $("stale").hidden = !stale;
    $("stale").textContent = connected ? `no report for ${Math.round(silent)} s` : "console not reachable";
    if (!connected && status !== "stopped") {
      $("status").textContent = "unreachable";
      $("status").className = "badge stopped";
    }
  }
  setInterval(markStale, 1000);
  function showLatest(r) {
    if (!r || !r.partition_backlog) return;
    charts.backlog.data.labels = r.partition_backlog.map((_, i) => "p" + i);
    charts.backlog.data.datasets[0].data = r.partition_backlog;
    charts.backlog.data.datasets[1].data = r.partition_lag_ms;
  }
  function showPredict(p) {
    const now = Date.now() / 1000;
    if (!p || now - lastPredictAt < 1) return;
    lastPredictAt = now;
    if (p.per_s > 0) $("predict-none").hidden = true;
    push(charts.predict.data.datasets[0], { x: now, y: p.per_s });
    if (p.p50_ms !== null) {
      push(charts.predict.data.datasets[1], { x: now, y: p.p50_ms });
      push(charts.predict.data.datasets[2], { x: now, y: p.p99_ms });
    }
  }
  function showJoin(latest, totals) {
    if (!latest || !latest.join) return;
    const j = latest.join;
    $("join-pending-events").textContent = Math.round(j.pending.events).toLocaleString();
    $("join-pending-labels").textContent = Math.round(j.pending.labels).toLocaleString();
    $("join-late").textContent = Math.round(j.totals.late_labels) + " / " + Math.round(j.totals.orphan_labels);
    const now = { t: latest.elapsed_s, counts: totals.step };
    if (joinSeen && now.t > joinSeen.t) {
      for (const key of ["joined", "expired", "predictions"]) {
        const rate = ((now.counts[key] || 0) - (joinSeen.counts[key] || 0)) / (now.t - joinSeen.t);
        $("join-" + key + "-rate").textContent = Math.round(rate).toLocaleString();
      }
    }
    if (!joinSeen || now.t - joinSeen.t >= 1 || now.t < joinSeen.t) joinSeen = now; // rates over >= 1 s
    const delays = totals.label_delays;
    const buckets = Object.keys(delays);
    charts.delays.data.labels = buckets.map((k) => k.replace("le_", "<= "));
    charts.delays.data.datasets[0].data = buckets.map((k) => delays[k]);
  }
  // rows owned and running totals per DynamicEmbedding table (only on runs that have one)
  function showTables(latest) {
    if (!latest || !latest.tables) return;
    const columns = ["size", "capacity", "inserts", "evictions", "default_hits", "full"];
    const rows = Object.entries(latest.tables).map(([name, counts]) => {
      const tr = document.createElement("tr");
      tr.dataset.table = name;
      for (const text of [name, ...columns.map((c) => (counts[c] ?? 0).toLocaleString())]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    });
    $("tables-body").replaceChildren(...rows);
  }
  function showSnapshot(s) {
    window.hvdConsole.snapshot = s;
    showFeatures(s.features);
    showHeader(s);
    showRanks(s);
    showLatest(s.latest);
    showJoin(s.latest, s.join_totals);
    showTables(s.latest);
    showPredict(s.predict);
    showMarkers(s.markers);
  }
  function redraw() { Object.values(charts).forEach((c) => c.update("none")); }
  function message(text, isError) {
    $("message").textContent = text;
    $("message").className = isError ? "error" : "";
  }

  const socket = io({ transports: ["websocket", "polling"] });
  socket.on("connect", () => { connected = true; lastReportAt = Date.now(); });
  socket.on("disconnect", () => { connected = false; markStale(); });
  socket.on("connect_error", () => { connected = false; $("status").textContent = "disconnected"; markStale(); });
  socket.on("history", (h) => {
    for (const c of Object.values(charts)) if (c.config.type === "line") c.data.datasets.forEach((d) => (d.data = []));
    charts.dlq.data.datasets = [];
    $("dlq-none").hidden = false;
    for (const key of Object.keys(ema)) delete ema[key];
    lastElapsed = null;
    h.points.forEach(addPoint);
    showSnapshot(h);
    $("config").textContent = JSON.stringify(h.config, null, 2);
    redraw();
  });
  socket.on("reports", (batch) => {
    lastReportAt = Date.now();
    for (const r of batch.reports) {
      if (r.count || r.checkpoint || r.stopped) addPoint(r);
      window.hvdConsole.received += 1;
    }
    showSnapshot(batch);
    redraw();
  });

  async function control(action) {
    const response = await fetch("/api/" + action, {
      method: "POST", headers: { Authorization: "Bearer " + $("token").value } });
    const body = await response.json();
    message(response.ok ? action + " requested: " + body.note : action + " failed: " + body.error, !response.ok);
  }
  $("save").addEventListener("click", () => control("save"));
  $("stop").addEventListener("click", () => control("stop"));

  $("predict").addEventListener("click", async () => {
    const response = await fetch("/v1/models/" + modelName + ":predict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: $("predict-input").value });
    $("predict-output").textContent = JSON.stringify(await response.json());
  });
  fetch("/v1/models/" + modelName + "/metadata").then((r) => r.json()).then((meta) => {
    if (!meta.inputs) return;
    const input = Object.values(meta.inputs)[0];
    const zeros = (shape) => shape.length ? Array.from({ length: shape[0] }, () => zeros(shape.slice(1))) : 0;
    const example = zeros(input.shape.slice(1));
    $("predict-input").value = JSON.stringify({ instances: [example] });
  });
})();
