// The engine page: the log's last lines (and the state) fetched again every few seconds while the page is shown.
// Bounded: the server sends at most 200 lines of 64 KiB; one request at a time; slower after a failure.
(function () {
  "use strict";
  var root = document.getElementById("engine");
  var logEl = document.querySelector("[data-log]");
  if (!root || !logEl || !root.dataset.logUrl || !window.fetch) return;
  var note = document.querySelector("[data-log-note]"), status = document.querySelector("[data-log-status]");
  var EVERY = 5000, MAX = 60000, wait = EVERY, timer = null, busy = false;

  function atBottom() { return logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 30; }

  function show(data) {
    var follow = atBottom();
    var text = data.lines.length ? data.lines.join("\n") + "\n" : "";
    if (logEl.textContent !== text) logEl.textContent = text;  // text, never HTML: a log line is not markup
    if (note) note.textContent = data.note || "";
    if (follow) logEl.scrollTop = logEl.scrollHeight;
    var pill = root.querySelector("[data-engine-state]");
    if (pill && pill.dataset.state !== data.state) {
      pill.dataset.state = data.state;
      pill.className = "state state-" + data.state;
      pill.textContent = data.state_label;
    }
    var pid = root.querySelector("[data-engine-pid]");
    if (pid) pid.textContent = data.pid || "–";
  }

  function refresh() {
    timer = null;
    if (busy || document.hidden) return;
    busy = true;
    fetch(root.dataset.logUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        show(data);
        wait = EVERY;
        if (status) status.textContent = "Refreshed " + new Date().toLocaleTimeString() + "; again every 5 seconds.";
      })
      .catch(function (error) {
        wait = Math.min(wait * 2, MAX);
        if (status) status.textContent = "Not refreshed (" + error.message + "); trying again in " + wait / 1000 + " s.";
      })
      .then(function () { busy = false; schedule(); });
  }

  function schedule() { if (!timer && !document.hidden) timer = setTimeout(refresh, wait); }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { clearTimeout(timer); timer = null; } else { refresh(); }
  });
  logEl.scrollTop = logEl.scrollHeight;
  schedule();
})();
