/* Statistics charts drawn with the Chart.js UMD build shipped in static/vendor (no CDN). */
(function () {
  "use strict";
  var node = document.getElementById("chart-data");
  if (!node || typeof Chart === "undefined") { return; }
  var data = JSON.parse(node.textContent);
  var palette = ["#1b4f9c", "#1f7a3a", "#c98a00", "#b42318", "#6b4fbb", "#0e7c86", "#8a5a00", "#647089"];
  var charts = {};

  function draw(key, type, label, options) {
    var canvas = document.getElementById("chart-" + key);
    if (!canvas || !data[key]) { return; }
    charts[key] = new Chart(canvas, {
      type: type,
      data: {
        labels: data[key].labels,
        datasets: [{
          label: label,
          data: data[key].values,
          backgroundColor: type === "line" ? "rgba(27,79,156,.15)" : palette,
          borderColor: type === "line" ? "#1b4f9c" : palette,
          fill: type === "line",
          tension: 0.2
        }]
      },
      options: Object.assign({ responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: type === "doughnut" } } }, options || {})
    });
  }

  // Counts are whole numbers: start at zero and never show 0.5 requests.
  var counts = { beginAtZero: true, ticks: { precision: 0 } };
  draw("institution", "bar", data.series_label, { indexAxis: "y", scales: { x: counts } });
  draw("category", "doughnut", data.series_label);
  draw("month", "line", data.series_label, { scales: { y: counts } });
  draw("lead_time", "bar", data.lead_label, { scales: { y: { beginAtZero: true } } });
  window.guardiaCharts = charts;  // lets the browser test check the charts were drawn
})();
