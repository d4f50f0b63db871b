// Draws the chart panels with Chart.js and refreshes every panel from /api/panels.
// Tables are server-rendered; on refresh their HTML comes from /api/tables.
"use strict";

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777",
                "#4b5563", "#65a30d", "#9333ea"];
const charts = {};

function timeLabel(ms) {
  return new Date(ms).toISOString().substring(11, 19);
}

function datasets(panel) {
  return panel.series.map((s, i) => ({
    label: s.label,
    data: panel.kind === "bar" ? s.points.map((p) => p[1]) : s.points.map((p) => ({x: p[0], y: p[1]})),
    borderColor: COLORS[i % COLORS.length],
    backgroundColor: COLORS[i % COLORS.length],
    pointRadius: 2,
    borderWidth: 1.5,
  }));
}

function barLabels(panel) {
  const labels = [];
  panel.series.forEach((s) => s.points.forEach((p) => {
    if (!labels.includes(p[0])) labels.push(p[0]);
  }));
  return labels.sort();
}

function barData(panel) {
  // Bars line up by category: each series gets a value (or 0) for every label.
  const labels = barLabels(panel);
  return {
    labels: labels,
    datasets: datasets(panel).map((d, i) => {
      const byX = new Map(panel.series[i].points.map((p) => [p[0], p[1]]));
      return Object.assign(d, {data: labels.map((l) => byX.get(l) || 0)});
    }),
  };
}

function config(panel) {
  if (panel.kind === "bar") {
    return {type: "bar", data: barData(panel),
            options: {animation: false, responsive: true, maintainAspectRatio: false}};
  }
  const x = {type: "linear", ticks: {callback: timeLabel, maxTicksLimit: 6}};
  const times = panel.series.flatMap((s) => s.points.map((p) => p[0]));
  if (times.length && Math.max(...times) - Math.min(...times) < 10000) {
    // One bucket only: show the last minute around it rather than a day-wide axis.
    x.min = Math.min(...times) - 60000;
    x.max = Math.max(...times) + 10000;
  }
  return {
    type: "line",
    data: {datasets: datasets(panel)},
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
      scales: {x: x},
      plugins: {legend: {labels: {boxWidth: 10}}},
    },
  };
}

function draw(panel) {
  const section = document.getElementById("panel-" + panel.key);
  if (!section) return;
  if (panel.kind === "table") {
    section.dataset.points = String(panel.rows.length);
    return;
  }
  const points = panel.series.reduce((n, s) => n + s.points.length, 0);
  section.dataset.points = String(points);
  section.classList.toggle("nodata", points === 0);
  const existing = charts[panel.key];
  if (existing) {
    const fresh = config(panel).data;
    existing.data.labels = fresh.labels;
    existing.data.datasets = fresh.datasets;
    existing.update("none");
    return;
  }
  const canvas = document.getElementById("chart-" + panel.key);
  charts[panel.key] = new Chart(canvas, config(panel));
  section.dataset.drawn = "true";
}

function stamp() {
  document.getElementById("updated").textContent = "updated " + new Date().toISOString().substring(11, 19) + " UTC";
}

async function refresh() {
  try {
    const [panels, tables] = await Promise.all([
      fetch("/api/panels").then((r) => r.json()),
      fetch("/api/tables").then((r) => r.json()),
    ]);
    panels.forEach(draw);
    Object.entries(tables).forEach(([key, html]) => {
      const box = document.getElementById("table-" + key);
      if (box) box.innerHTML = html;
    });
    stamp();
  } catch (error) {
    document.getElementById("updated").textContent = "refresh failed: " + error;
  }
}

JSON.parse(document.getElementById("initial-data").textContent).forEach(draw);
stamp();
document.body.dataset.ready = "true";
const seconds = parseFloat(document.body.dataset.refreshS || "5");
setInterval(refresh, seconds * 1000);
