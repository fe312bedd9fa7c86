// Ages: every <time data-ago> the server wrote (an absolute time) reads "12 s ago" here and stays current.
// The server never writes an age: it would change every second, and live pages are sent only what changed
// (glmadmin/templatetags/ages.py). Counted on the server's clock, corrected by the offset of this browser's.
(function () {
  "use strict";
  var offset = 0;  // server clock minus this browser's, in ms
  var served = Number(document.body.dataset.serverNow);
  if (served) offset = served * 1000 - Date.now();

  function words(seconds) {
    var s = Math.round(Math.abs(seconds));
    var text;
    if (s < 5) return "now";
    if (s < 60) text = s + " s";
    else if (s < 3600) text = Math.floor(s / 60) + " min";
    else if (s < 86400) text = Math.floor(s / 3600) + " h" + (s % 3600 >= 60 ? " " + Math.floor(s % 3600 / 60) + " min" : "");
    else text = Math.floor(s / 86400) + (s < 172800 ? " day" : " days");
    return seconds < 0 ? "in " + text : text + " ago";
  }

  function render() {
    var now = Date.now() + offset;
    document.querySelectorAll("time[data-ago]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(at)) el.textContent = words((now - at) / 1000);
    });
  }

  document.addEventListener("glmadmin:live", function (event) {
    if (event.detail.published_at) offset = event.detail.published_at * 1000 - Date.now();
    render();
  });
  render();
  setInterval(render, 5000);
})();
