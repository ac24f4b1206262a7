// The dashboard's charts (Chart.js, served by CareCall from /console/static/vendor). The figures come
// from the page itself (a JSON data block, never executed) and every label is set as text by Chart.js.
(function () {
  "use strict";
  const PALETTE = ["#2f6fb0", "#d9822b", "#3a9a5b", "#b8413a", "#7a5bb0", "#8c6d3f", "#c25b9e", "#5f7d8c", "#9aa83a", "#3ab0a6"];
  const QA = { pass: "#3a9a5b", warn: "#e0a800", fail: "#b8413a" };
  const DISPOSITION = {
    emergency_ambulance: "#8f1d14", emergency: "#d9534f", consultation_24: "#e0a800",
    consultation: "#2f6fb0", self_care: "#3a9a5b", none: "#9e9e9e",
  };

  function named(map, key) { return (map && map[key]) || key; }
  // long names (red flags, QA checks) are shortened on the axis; the tooltip and the table keep them whole
  function short(label) { return label.length > 30 ? label.slice(0, 29) + "…" : label; }
  function shortTicks() { return function (value) { return short(String(this.getLabelForValue(value))); }; }

  function start() {
    const block = document.getElementById("dashboard-data");
    if (!block || typeof window.Chart === "undefined") return;
    const payload = JSON.parse(block.textContent);
    const f = payload.figures, L = payload.labels, ui = L.ui;
    Chart.defaults.animation = false;
    Chart.defaults.font.family = "system-ui, 'Noto Sans CJK SC', 'WenQuanYi Micro Hei', sans-serif";
    Chart.defaults.maintainAspectRatio = false;

    function perDay(id, series, names) {
      const keys = Object.keys(series);
      new Chart(document.getElementById(id), {
        type: "bar",
        data: {
          labels: f.days,
          datasets: keys.map((k, i) => ({ label: named(names, k), data: series[k], backgroundColor: PALETTE[i % PALETTE.length] })),
        },
        options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
      });
    }

    function counts(id, values, names, colours, horizontal) {
      const keys = Object.keys(values);
      new Chart(document.getElementById(id), {
        type: "bar",
        data: {
          labels: keys.map((k) => named(names, k)),
          datasets: [{ label: ui.count, data: keys.map((k) => values[k]),
                       backgroundColor: keys.map((k, i) => (colours && colours[k]) || PALETTE[i % PALETTE.length]) }],
        },
        options: {
          indexAxis: horizontal ? "y" : "x",
          plugins: { legend: { display: false } },
          scales: {
            [horizontal ? "x" : "y"]: { beginAtZero: true, ticks: { precision: 0 } },
            [horizontal ? "y" : "x"]: { ticks: { callback: shortTicks() } },
          },
        },
      });
    }

    perDay("chart-channels", f.calls_by_channel, L.channels);
    perDay("chart-modes", f.calls_by_mode, L.modes);
    counts("chart-dispositions", f.dispositions, L.dispositions, DISPOSITION, true);
    counts("chart-departments", f.departments, L.departments, null, true);
    counts("chart-red-flags", f.red_flags, L.red_flags, null, true);
    counts("chart-problems", f.followup.problems, L.problems, null, true);

    const s = f.service;
    if (!s) return;
    const checks = Object.keys(s.qa_checks).filter((c) => s.qa_checks[c].pass_rate !== null);
    new Chart(document.getElementById("chart-qa-checks"), {
      type: "bar",
      data: {
        labels: checks.map((c) => named(L.qa_checks, c)),
        datasets: ["pass", "warn", "fail"].map((r) => ({
          label: named(L.qa_results, r), backgroundColor: QA[r],
          data: checks.map((c) => {
            const n = s.qa_checks[c];
            return Math.round((1000 * n[r]) / (n.pass + n.warn + n.fail)) / 10;
          }),
        })),
      },
      options: {
        indexAxis: "y",
        scales: { x: { stacked: true, min: 0, max: 100, title: { display: true, text: "%" } },
                  y: { stacked: true, ticks: { autoSkip: false, callback: shortTicks() } } },
      },
    });
    new Chart(document.getElementById("chart-latency"), {
      type: "line",
      data: {
        labels: f.days,
        datasets: [
          { label: ui.p50, data: s.latency.p50, borderColor: PALETTE[0], backgroundColor: PALETTE[0], spanGaps: true },
          { label: ui.p95, data: s.latency.p95, borderColor: PALETTE[3], backgroundColor: PALETTE[3], spanGaps: true },
        ],
      },
      options: { scales: { y: { beginAtZero: true } } },
    });
    new Chart(document.getElementById("chart-uncertain"), {
      type: "line",
      data: {
        labels: f.days,
        datasets: [{ label: ui.uncertain, data: s.asr_uncertain.per_100_caller_turns, borderColor: PALETTE[1],
                     backgroundColor: PALETTE[1], spanGaps: true }],
      },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
