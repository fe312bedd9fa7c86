// Live status bar and alert banners. The server sends the whole state as
// rendered HTML on connect and on every change; this file only swaps it in,
// remembers dismissed toasts, and reconnects with back-off.
(function () {
  "use strict";
  var bar = document.getElementById("statusbar");
  var alerts = document.getElementById("alerts");
  if (!bar || !alerts || !window.WebSocket) return;
  var DISMISSED = "glmadmin.dismissed";
  var lost = document.getElementById("live-lost");
  // Reconnect fast and keep trying at most a second apart: a page is current again within about a
  // second of the server coming back (the first message after connecting is the whole state).
  var FIRST_RETRY = 250, MAX_RETRY = 1000;
  var retry = FIRST_RETRY;

  function dismissed() {
    try { return JSON.parse(sessionStorage.getItem(DISMISSED) || "[]"); } catch (e) { return []; }
  }

  function hideDismissed() {
    var keys = dismissed();
    alerts.querySelectorAll("[data-toast-key]").forEach(function (toast) {
      if (keys.indexOf(toast.dataset.toastKey) !== -1) toast.remove();
    });
  }

  function updateFilesystems(filesystems) {
    filesystems.forEach(function (fs) {
      var row = document.querySelector('tr[data-fs="' + fs.id + '"]');
      var fill = row && row.querySelector(".fill");
      if (fill && fs.percent !== null) fill.style.width = fs.percent + "%";
    });
  }

  function updateEngines(engines) {
    engines.forEach(function (engine) {
      var pill = document.querySelector('[data-engine="' + engine.name + '"] [data-engine-state]');
      if (!pill || pill.dataset.state === engine.state) return;
      pill.dataset.state = engine.state;
      pill.className = "state state-" + engine.state;
      pill.textContent = engine.state.charAt(0).toUpperCase() + engine.state.slice(1);
    });
  }

  // Actions that disturb serving ask first.
  document.addEventListener("submit", function (event) {
    var question = event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  alerts.addEventListener("click", function (event) {
    if (!event.target.classList.contains("toast-close")) return;
    var toast = event.target.closest("[data-toast-key]");
    var keys = dismissed();
    keys.push(toast.dataset.toastKey);
    sessionStorage.setItem(DISMISSED, JSON.stringify(keys.slice(-50)));
    toast.remove();
  });

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + bar.dataset.liveSocket);
    socket.onopen = function () { retry = FIRST_RETRY; document.body.classList.add("live"); };
    socket.onmessage = function (event) {
      var msg = JSON.parse(event.data);
      if (msg.type !== "state") return;
      if (lost) lost.hidden = true;  // current again: the snapshot replaces whatever was stale
      bar.innerHTML = msg.html.statusbar;
      alerts.innerHTML = msg.html.alerts;
      // GPUs, engine metrics and charts: only the dashboard has the place for them.
      var telemetry = document.getElementById("telemetry");
      if (telemetry && msg.html.telemetry !== undefined) telemetry.innerHTML = msg.html.telemetry;
      hideDismissed();
      updateFilesystems(msg.state.filesystems);
      updateEngines(msg.state.engines || []);
      // Page parts with their own script (the dashboard's disk rows) take the state from here.
      document.dispatchEvent(new CustomEvent("glmadmin:live", {detail: msg}));
      document.body.dataset.liveVersion = String(Number(document.body.dataset.liveVersion || 0) + 1);
    };
    socket.onclose = function (event) {
      document.body.classList.remove("live");
      if (event.code === 4401) {  // the session ended (logout, expiry, deactivation): reconnecting cannot help
        if (lost) { lost.textContent = "Signed out: reload the page to log in again."; lost.hidden = false; }
        return;
      }
      if (lost) lost.hidden = false;
      setTimeout(connect, retry * (0.75 + Math.random() / 2));  // jitter: open pages do not reconnect in step
      retry = Math.min(retry * 2, MAX_RETRY);
    };
  }

  hideDismissed();
  connect();
})();
