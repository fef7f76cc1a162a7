// The dashboard page: first the charts' recent points from /history (kept by the server, so a page that opens
// does not start empty), then one EventSource on /events; each message is a snapshot (dimee/dashboard/live.py)
// that updates the numbers in place and appends a point to the time-series charts (the last `keepPoints` kept).
"use strict";

let keepPoints = 600;  // how many points the charts keep: the server's, once /history has said
const PALETTE = ["#4c9be8", "#f0a030", "#9b59b6"];  // by the tier's place in the order, cheapest first
let tiers = [];  // the tier order: the keys of the snapshot's tier_shares, as the server orders them
const series = { t: [], shares: {}, cost: [], cloud: [], p50: [], p99: [] };
let revision = 0;  // Plotly.react redraws mutated arrays only when the layout's datarevision changes
const layout = (title, yaxis) => ({
  title: { text: title, font: { size: 14 } }, margin: { l: 50, r: 15, t: 35, b: 35 }, yaxis, datarevision: revision,
  legend: { orientation: "h", y: -0.2 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff",
});
const config = { displayModeBar: false, responsive: true };

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function fixed(value, digits, suffix = "") {
  return value === null || value === undefined ? "–" : value.toFixed(digits) + suffix;
}

function colour(tier) {
  return PALETTE[tiers.indexOf(tier)] || "#888";
}

function percent(value) {
  return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + "%";
}

function rows(id, pairs) {
  const table = document.getElementById(id);
  if (pairs.length === 0) pairs = [["none so far", ""]];
  table.replaceChildren(...pairs.map(([key, value]) => {
    const row = document.createElement("tr");
    for (const cell of [key, value]) {
      const td = document.createElement("td");
      td.textContent = cell;
      row.appendChild(td);
    }
    return row;
  }));
}

function showNumbers(s) {
  text("answered", s.answered);  // a plain integer: scripts read it
  text("repeats", s.answered_text);  // the sink's and tail's words (predictions/answered.py)
  text("throughput", fixed(s.throughput_per_s, 1, " /s"));
  text("accuracy", percent(s.accuracy));
  text("labelled", `${s.labelled} labelled`);
  text("cost-vs-cloud", percent(s.cost_vs_cloud));
  text("mean-cost", `mean ${fixed(s.mean_cost, 3)}, cloud-only ${fixed(s.cloud_only_cost, 3)}`);
  text("latency-window", `(finished in the last ${s.latency_window_s} s)`);
  text("latency-p50", fixed(s.latency_p50_ms, 0, " ms"));
  text("latency-p99", fixed(s.latency_p99_ms, 0, " ms"));
  text("tier-shares", tiers.map((t) => (100 * s.tier_shares[t]).toFixed(0)).join(" / ") + " %");
  text("escalations", s.escalations);
  text("dead-letters", s.dead_letters);
  text("audits", Object.entries(s.audits || {}).map(([tier, a]) =>
    `${tier} ${(100 * a.disagreement).toFixed(1)}% [${(100 * a.interval[0]).toFixed(1)}, ` +
    `${(100 * a.interval[1]).toFixed(1)}] of ${a.audits}`).join(" · ") || "none yet");
  text("threshold-offset", s.threshold_offset === null ? "–" : fixed(s.threshold_offset, 3));
  rows("escalation-paths", Object.entries(s.escalation_paths));
  rows("dead-letter-reasons", Object.entries(s.dead_letter_reasons));
  text("centroid-note", s.centroid_note);
  rows("centroid-table", (s.centroids || []).map((p) => [
    `pool ${p.pool} (${p.tier})`, `moved ${fixed(p.shift, 4)} · ${p.adapted} samples adapted`]));
}

function remember(s) {
  const last = series.t[series.t.length - 1];
  if (last !== undefined && s.at * 1000 <= last.getTime()) return;  // already drawn (from /history)
  const keep = (list, value) => { list.push(value); if (list.length > keepPoints) list.shift(); };
  keep(series.t, new Date(s.at * 1000));
  for (const tier of tiers) keep(series.shares[tier] ??= [], s.tier_shares[tier]);
  keep(series.cost, s.mean_cost);
  keep(series.cloud, s.cloud_only_cost);
  keep(series.p50, s.latency_p50_ms);
  keep(series.p99, s.latency_p99_ms);
}

function drawCharts(s) {
  revision += 1;
  const t = series.t;
  Plotly.react("chart-tiers", tiers.map((tier) => ({
    x: t, y: series.shares[tier], name: tier, stackgroup: "shares", line: { color: colour(tier) },
  })), layout("tier shares", { range: [0, 1], tickformat: ".0%" }), config);
  Plotly.react("chart-cost", [
    { x: t, y: series.cost, name: "mean cost" },
    { x: t, y: series.cloud, name: "cloud-only", line: { dash: "dash", color: "#999" } },
  ], layout("mean cost against cloud-only", { rangemode: "tozero" }), config);
  Plotly.react("chart-latency", [
    { x: t, y: series.p50, name: "p50" }, { x: t, y: series.p99, name: "p99" },
  ], layout("latency (ms)", { rangemode: "tozero" }), config);
  const pools = (s && s.centroids) || [];
  Plotly.react("chart-centroids", [{
    type: "bar", x: pools.map((p) => `pool ${p.pool} (${p.tier})`), y: pools.map((p) => p.shift),
    marker: { color: pools.map((p) => colour(p.tier)) },
  }], layout("centroid distance from calibration", { rangemode: "tozero" }), config);
}

function connect() {
  const status = document.getElementById("status");
  const source = new EventSource("/events");  // reconnects by itself after an error
  source.onopen = () => { status.textContent = "live"; status.className = "status live"; };
  source.onerror = () => { status.textContent = "reconnecting…"; status.className = "status"; };
  source.onmessage = (event) => {
    const snapshot = JSON.parse(event.data);
    tiers = Object.keys(snapshot.tier_shares);
    showNumbers(snapshot);
    remember(snapshot);
    drawCharts(snapshot);
  };
}

async function start() {
  try {
    const recent = await (await fetch("/history")).json();
    keepPoints = recent.keep;
    if (recent.points.length > 0) {
      tiers = Object.keys(recent.points[0].tier_shares);
      recent.points.forEach(remember);
      drawCharts(null);
    }
  } catch (error) {
    console.warn("no chart history:", error);  // the live points still come
  }
  connect();
}

start();
