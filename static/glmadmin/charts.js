// Values on hover for the server-drawn history charts (monitoring/chart.html): each chart carries the bucket
// averages its lines are drawn from (data-series); this shows a cursor line and the values under the pointer.
// Delegated from the document, so charts swapped in by live.js need nothing.
(function () {
  "use strict";

  function fmt(value, unit) {
    if (value === null || value === undefined) return "–";
    if (unit === "s") return value < 1 ? Math.round(value * 1000) + " ms" : value.toFixed(1) + " s";
    if (unit === "%") return value.toFixed(1) + " %";
    return Number(value.toPrecision(3)) + " " + unit;
  }

  function clock(seconds, tz) {  // the server's time zone, as the axis labels
    return new Date((seconds + tz) * 1000).toISOString().slice(11, 16);
  }

  function show(area, event) {
    var figure = area.closest("[data-series]");
    if (!figure) return;
    var series = JSON.parse(figure.dataset.series);
    var box = area.getBoundingClientRect();
    var f = Math.max(0, Math.min(1, (event.clientX - box.left) / box.width));
    var bucket = Math.round(f * (series.buckets - 1));
    var at = series.start + (bucket + 0.5) * series.span / series.buckets;
    var cursor = area.querySelector(".cursor"), tip = area.querySelector(".tip");
    cursor.style.left = (100 * bucket / (series.buckets - 1)) + "%";
    cursor.hidden = false;
    tip.textContent = "";
    var head = document.createElement("div");
    head.className = "tip-time";
    head.textContent = clock(at, series.tz);
    tip.appendChild(head);
    series.lines.forEach(function (line) {
      var row = document.createElement("div");
      row.className = "series-" + line.colour;
      row.textContent = line.label + ": " + fmt(line.values[bucket], series.unit);
      tip.appendChild(row);
    });
    tip.hidden = false;
    var left = f > 0.6;  // keep the tip inside the chart
    tip.style.left = left ? "auto" : (100 * f + 2) + "%";
    tip.style.right = left ? (100 - 100 * f + 2) + "%" : "auto";
  }

  function hide(area) {
    area.querySelectorAll(".cursor, .tip").forEach(function (el) { el.hidden = true; });
  }

  document.addEventListener("pointermove", function (event) {
    var area = event.target.closest && event.target.closest(".plotarea");
    document.querySelectorAll(".plotarea.hover").forEach(function (other) {
      if (other !== area) { other.classList.remove("hover"); hide(other); }
    });
    if (!area) return;
    area.classList.add("hover");
    show(area, event);
  });
})();
