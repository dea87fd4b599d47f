/*
 * keygov's charts, drawn with the vendored Chart.js (static/vendor/chartjs/chart.umd.min.js,
 * loaded before this file). Each chart is a <canvas data-chart="ID"> next to a
 * <script type="application/json" id="ID"> written by Django's json_script: no inline script.
 *
 * The JSON (inventory/services/dashboard.py) holds: type ("bar" | "line"), labels, datasets
 * ({label, data, yAxisID?}), and optionally horizontal (bar), axes ({y: unit, y1: unit}: a line
 * chart with a second axis on the right) and xTitle.
 */
(function () {
  "use strict";

  // Colours with enough contrast on white, in the order the datasets come.
  var PALETTE = ["#0a58ca", "#146c43", "#b02a37", "#997404", "#3d0a91", "#a33d00"];
  // Age buckets: from fresh (green) to very old (dark red).
  var AGE_COLOURS = ["#146c43", "#479f76", "#997404", "#dc6a00", "#b02a37", "#58151c"];

  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function lineConfig(spec) {
    var scales = {
      x: { ticks: { maxTicksLimit: 12, autoSkip: true, maxRotation: 0 } }
    };
    var axes = spec.axes || { y: "" };
    Object.keys(axes).forEach(function (id, i) {
      scales[id] = {
        position: i === 0 ? "left" : "right",
        beginAtZero: true,
        title: { display: Boolean(axes[id]), text: axes[id] },
        grid: { drawOnChartArea: i === 0 }
      };
    });
    return {
      type: "line",
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map(function (d, i) {
          var colour = PALETTE[i % PALETTE.length];
          return {
            label: d.label,
            data: d.data,
            yAxisID: d.yAxisID || "y",
            borderColor: colour,
            backgroundColor: colour,
            borderWidth: 2,
            // Days in the "days" axis are drawn dashed, so the two units tell apart.
            borderDash: d.yAxisID === "y1" ? [6, 3] : [],
            pointRadius: spec.labels.length > 60 ? 0 : 2,
            pointHitRadius: 6,
            tension: 0.2,
            spanGaps: true
          };
        })
      },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: scales,
        plugins: { legend: { position: "bottom" } }
      }
    };
  }

  function barConfig(spec, canvas) {
    var ages = canvas.dataset.chart.indexOf("ages") !== -1;
    return {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map(function (d, i) {
          return {
            label: d.label,
            data: d.data,
            backgroundColor: ages ? AGE_COLOURS : PALETTE[(i + 2) % PALETTE.length],
            borderRadius: 3
          };
        })
      },
      options: {
        indexAxis: spec.horizontal ? "y" : "x",
        scales: (function () {
          var value = { beginAtZero: true, ticks: { precision: 0 } };
          var category = { title: { display: Boolean(spec.xTitle), text: spec.xTitle || "" } };
          return spec.horizontal ? { x: value, y: category } : { x: category, y: value };
        })(),
        plugins: { legend: { display: false } }
      }
    };
  }

  function draw(canvas) {
    if (canvas.dataset.drawn || typeof window.Chart === "undefined") {
      return;
    }
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) {
      return;
    }
    var spec = JSON.parse(source.textContent);
    var config = spec.type === "line" ? lineConfig(spec) : barConfig(spec, canvas);
    config.options.responsive = true;
    config.options.maintainAspectRatio = false;
    config.options.animation = reduceMotion ? false : { duration: 400 };
    canvas.dataset.drawn = "1";
    new window.Chart(canvas, config);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { drawAll(); });
  } else {
    drawAll();
  }
  // Content swapped in by htmx may bring charts too.
  document.addEventListener("htmx:load", function (event) { drawAll(event.target); });
})();
