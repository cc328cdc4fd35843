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
          backgroundColor: type === "line" ? "rgba(27,79,156,.15)" : (key === "period" ? "#1b4f9c" : palette),
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
