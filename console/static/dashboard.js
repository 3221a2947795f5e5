// Live dashboard: history on connect, then batches of step reports over Socket.IO.
(function () {
  "use strict";
  const SMOOTHING = 0.9; // exponential moving average weight for the smoothed curves
  const $ = (id) => document.getElementById(id);
  const modelName = document.body.dataset.modelName;

  // The token comes from ?token=... (the link printed at start) or the field; kept locally.
  const urlToken = new URLSearchParams(location.search).get("token");
  if (urlToken) localStorage.setItem("hvd-online-token", urlToken);
  $("token").value = localStorage.getItem("hvd-online-token") || "";
  $("token").addEventListener("change", () => localStorage.setItem("hvd-online-token", $("token").value));

  function lineChart(id, labels) {
    return new Chart($(id), {
      type: "line",
      data: { datasets: labels.map((label, i) => (i < 2 ? {
        label, data: [], pointRadius: 0, borderWidth: i === 0 ? 1 : 2,
        borderColor: i === 0 ? "#9ab" : "#2a5db0" } : {
        // events (drift) are drawn as large red points, no line
        label, data: [], showLine: false, pointRadius: 7, pointStyle: "triangle",
        backgroundColor: "#d22", borderColor: "#d22" })) },
      options: { animation: false, parsing: false, normalized: true, maintainAspectRatio: false,
        scales: { x: { type: "linear", title: { display: true, text: "step" } } } },
    });
  }
  function barChart(id, labels) {
    return new Chart($(id), {
      type: "bar",
      data: { labels: [], datasets: labels.map((label) => ({ label, data: [] })) },
      options: { animation: false, maintainAspectRatio: false },
    });
  }
  const charts = {
    loss: lineChart("loss-chart", ["loss", "smoothed", "drift / response"]),
    metric: lineChart("metric-chart", ["metric", "smoothed"]),
    rate: lineChart("rate-chart", ["samples/s"]),
    ranks: barChart("ranks-chart", ["step time (ms)", "window fill (%)"]),
    backlog: barChart("backlog-chart", ["waiting (messages)", "lag (ms)"]),
    delayed: lineChart("delayed-chart", ["delayed loss", "delayed metric"]),
    delays: barChart("delay-chart", ["joined pairs"]),
  };
  // a running drift challenger's prequential loss, next to the model's
  charts.loss.data.datasets.push({ label: "challenger loss", data: [], pointRadius: 0,
    borderWidth: 1.5, borderColor: "#e80" });
  const ema = { loss: null, metric: null, delayed_loss: null, delayed_metric: null };
  let joinSeen = null; // {t, counts} of the previous update, for the rates
  window.hvdConsole = { charts, received: 0 };

  function addPoint(p) {
    for (const key of ["loss", "metric"]) {
      const value = p[key];
      if (value === null || value === undefined) continue;
      ema[key] = ema[key] === null ? value : SMOOTHING * ema[key] + (1 - SMOOTHING) * value;
      charts[key].data.datasets[0].data.push({ x: p.step, y: value });
      charts[key].data.datasets[1].data.push({ x: p.step, y: ema[key] });
    }
    if ((p.drift || p.drift_action) && p.loss !== null) {
      charts.loss.data.datasets[2].data.push({ x: p.step, y: p.loss });
    }
    if (p.drift_action) $("drift-action").textContent = `${p.drift_action} at step ${p.step}`;
    if (p.challenger_loss !== null && p.challenger_loss !== undefined) {
      charts.loss.data.datasets[3].data.push({ x: p.step, y: p.challenger_loss });
    }
    ["delayed_loss", "delayed_metric"].forEach((key, i) => {
      const value = p[key];
      if (value === null || value === undefined) return;
      ema[key] = ema[key] === null ? value : SMOOTHING * ema[key] + (1 - SMOOTHING) * value;
      charts.delayed.data.datasets[i].data.push({ x: p.step, y: ema[key] });
    });
    if (p.samples_per_s !== undefined) charts.rate.data.datasets[0].data.push({ x: p.step, y: p.samples_per_s });
  }
  function showLatest(r) {
    if (!r) return;
    $("step").textContent = r.step.toLocaleString();
    $("samples").textContent = r.samples_total.toLocaleString();
    $("rate").textContent = Math.round(r.samples_per_s).toLocaleString();
    $("rejected").textContent = r.rejected_total;
    $("skipped").textContent = r.skipped_steps;
    charts.ranks.data.labels = r.rank_step_time_s.map((_, i) => "rank " + i);
    charts.ranks.data.datasets[0].data = r.rank_step_time_s.map((t) => t * 1000);
    charts.ranks.data.datasets[1].data = r.rank_fill.map((f) => f * 100);
    charts.backlog.data.labels = r.partition_backlog.map((_, i) => "p" + i);
    charts.backlog.data.datasets[0].data = r.partition_backlog;
    charts.backlog.data.datasets[1].data = r.partition_lag_ms;
  }
  function showJoin(latest, totals) {
    if (!latest || !latest.join) return;
    $("join-panel").hidden = false;
    document.querySelectorAll(".join-figure").forEach((f) => (f.hidden = false));
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
    if (!joinSeen || now.t - joinSeen.t >= 1) joinSeen = now; // rates over >= 1 s
    const delays = totals.label_delays;
    const buckets = Object.keys(delays);
    charts.delays.data.labels = buckets.map((k) => k.replace("le_", "<= "));
    charts.delays.data.datasets[0].data = buckets.map((k) => delays[k]);
  }
  // rows owned and running totals per DynamicEmbedding table (only on runs that have one)
  function showTables(latest) {
    if (!latest || !latest.tables) return;
    $("tables-panel").hidden = false;
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
  function showState(s) {
    $("status").textContent = s.status;
    $("status").className = "badge " + s.status;
    if (s.last_checkpoint) {
      $("last-checkpoint").textContent = "step " + s.last_checkpoint.step + ": " + s.last_checkpoint.path;
    }
    if (s.status === "stopped") message("training stopped", false);
  }
  function redraw() { Object.values(charts).forEach((c) => c.update("none")); }
  function message(text, isError) {
    $("message").textContent = text;
    $("message").className = isError ? "error" : "";
  }

  const socket = io({ transports: ["websocket", "polling"] });
  socket.on("connect_error", () => $("status").textContent = "disconnected");
  socket.on("history", (h) => {
    for (const c of [charts.loss, charts.metric, charts.rate, charts.delayed]) c.data.datasets.forEach((d) => (d.data = []));
    ema.loss = ema.metric = ema.delayed_loss = ema.delayed_metric = null;
    h.points.forEach(addPoint);
    showLatest(h.latest);
    showJoin(h.latest, h.join_totals);
    showTables(h.latest);
    showState(h);
    $("config").textContent = JSON.stringify(h.config, null, 2);
    redraw();
  });
  socket.on("reports", (batch) => {
    for (const r of batch.reports) {
      if (r.count || r.checkpoint || r.stopped) addPoint(r);
      window.hvdConsole.received += 1;
    }
    showLatest(batch.latest);
    showJoin(batch.latest, batch.join_totals);
    showTables(batch.latest);
    showState(batch);
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
