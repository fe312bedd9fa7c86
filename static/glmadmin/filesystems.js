// Dashboard disk rows: a level held back by its "for" duration ("orange pending for 12 s of 30 s") and a check
// that stalled. live.js hands every live state over in a "glmadmin:live" event; the counter ticks here each
// second from the reading's start (server time, corrected by the clock offset of the last message).
(function () {
  "use strict";
  var offset = 0;  // server clock minus this browser's, in seconds

  function text(span) {
    var held = Date.now() / 1000 + offset - Number(span.dataset.since);
    var wait = Number(span.dataset.for);
    return span.dataset.level + " pending for " + Math.round(Math.max(0, Math.min(held, wait))) + " s of " + wait + " s";
  }

  function tick() {
    document.querySelectorAll("tr[data-fs] [data-pending]:not([hidden])").forEach(function (span) {
      span.textContent = text(span);
    });
  }

  function update(filesystems) {
    filesystems.forEach(function (fs) {
      var error = document.querySelector('tr[data-fs="' + fs.id + '"] [data-fs-error]');
      if (error) { error.textContent = fs.error || ""; error.hidden = !fs.error; }
      var span = document.querySelector('tr[data-fs="' + fs.id + '"] [data-pending]');
      if (!span) return;
      if (!fs.pending) { span.hidden = true; span.textContent = ""; return; }
      span.dataset.level = fs.pending.level;
      span.dataset.since = fs.pending.since;
      span.dataset["for"] = fs.pending["for"];
      span.hidden = false;
      span.textContent = text(span);
    });
  }

  document.addEventListener("glmadmin:live", function (event) {
    var msg = event.detail;
    if (msg.published_at) offset = msg.published_at - Date.now() / 1000;
    update(msg.state.filesystems || []);
  });
  setInterval(tick, 1000);
})();
