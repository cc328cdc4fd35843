/* Statistics charts drawn with the Chart.js UMD build shipped in static/vendor (no CDN).
   The server picks each chart's type (few points in time are bars, not a line) and the
   lead-time unit; the numbers are also in the table under each chart. */
(function () {
  "use strict";
  var node = document.getElementById("chart-data");
  if (!node || typeof Chart === "undefined") { return; }
  var data = JSON.parse(node.textContent);
  var palette = ["#1b4f9c", "#1f7a3a", "#c98a00", "#b42318", "#6b4fbb", "#0e7c86", "#8a5a00", "#647089"];
  var charts = {};

  function axisTitle(text) { return { display: true, text: text }; }

  /* Each category gets a colour and a pattern (stripes, dots, grid...), so the slices and
     their legend swatches are told apart without colour too. */
  var marks = ["solid", "diagonal", "dots", "horizontal", "cross", "vertical", "zigzag", "rings"];
  function pattern(colour, index) {
    var mark = marks[index % marks.length];
    if (mark === "solid") { return colour; }
    var tile = document.createElement("canvas");
    tile.width = tile.height = 12;
    var g = tile.getContext("2d");
    g.fillStyle = colour;
    g.fillRect(0, 0, 12, 12);
    g.strokeStyle = g.fillStyle = "rgba(255,255,255,.85)";
    g.lineWidth = 2;
    g.beginPath();
    if (mark === "diagonal") { g.moveTo(0, 12); g.lineTo(12, 0); }
    if (mark === "horizontal") { g.moveTo(0, 6); g.lineTo(12, 6); }
    if (mark === "vertical") { g.moveTo(6, 0); g.lineTo(6, 12); }
    if (mark === "cross") { g.moveTo(0, 6); g.lineTo(12, 6); g.moveTo(6, 0); g.lineTo(6, 12); }
    if (mark === "zigzag") { g.moveTo(0, 8); g.lineTo(4, 4); g.lineTo(8, 8); g.lineTo(12, 4); }
    if (mark === "rings") { g.arc(6, 6, 3, 0, 2 * Math.PI); }
    g.stroke();
    if (mark === "dots") { g.beginPath(); g.arc(6, 6, 2, 0, 2 * Math.PI); g.fill(); }
    return g.createPattern(tile, "repeat");
  }
  var patterned = palette.map(pattern);

  function draw(key, label, options) {
    var canvas = document.getElementById("chart-" + key);
    var series = data[key];
    if (!canvas || !series) { return; }
    var type = series.type;
    charts[key] = new Chart(canvas, {
      type: type,
      data: {
        labels: series.labels,
        datasets: [{
          label: label,
          data: series.values,
          backgroundColor: type === "line" ? "rgba(27,79,156,.15)" : (key === "period" ? "#1b4f9c" : patterned),
          borderColor: type === "line" ? "#1b4f9c" : (key === "period" ? "#1b4f9c" : palette),
          fill: type === "line",
          tension: 0.2,
          maxBarThickness: 48
        }]
      },
      options: Object.assign({ responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: type === "doughnut" } } }, options || {})
    });
  }

  // Counts are whole numbers: start at zero and never show 0.5 requests.
  var counts = { beginAtZero: true, ticks: { precision: 0 }, title: axisTitle(data.count_axis) };
  draw("institution", data.series_label, { indexAxis: "y", scales: { x: counts } });
  draw("category", data.series_label, data.category.type === "doughnut" ? {} : { scales: { y: counts } });
  draw("period", data.series_label, { scales: { y: counts, x: { title: axisTitle(data.period_axis) } } });
  draw("lead_time", data.lead_label, { scales: { y: { beginAtZero: true, title: axisTitle(data.lead_unit),
    ticks: { callback: function (value) { return value + data.lead_unit; } } } } });
  window.guardiaCharts = charts;  // lets the browser test check the charts were drawn
})();
