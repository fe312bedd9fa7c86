// Live page state. The server sends the whole state as rendered HTML on connect and on every change (the
// status bar, the banners, and on the dashboard every card, drawn by the same code as the first page load);
// this file only swaps it in, remembers dismissed toasts, and reconnects with back-off.
(function () {
  "use strict";
  var bar = document.getElementById("statusbar");
  var alerts = document.getElementById("alerts");
  if (!bar || !alerts || !window.WebSocket) return;
  var DISMISSED = "glmadmin.dismissed";
  var lost = document.getElementById("live-lost");
  var page = document.body.dataset.livePage;  // a page with cards of its own (the dashboard) asks for them
  // What this viewer may do: live cards are drawn once for every viewer, each action marked with what it needs.
  var can = (document.body.dataset.can || "").split(" ").filter(Boolean);
  // Reconnect fast and keep trying at most a second apart: a page is current again within about a
  // second of the server coming back (the first message after connecting is the whole state).
  var FIRST_RETRY = 250, MAX_RETRY = 1000;
  var retry = FIRST_RETRY;
  var waiting = {};  // card name -> HTML held back while the operator types in that card
  var shown = {};  // card name -> the HTML last swapped in

  function dismissed() {
    try { return JSON.parse(sessionStorage.getItem(DISMISSED) || "[]"); } catch (e) { return []; }
  }

  function hideDismissed() {
    var keys = dismissed();
    alerts.querySelectorAll("[data-toast-key]").forEach(function (toast) {
      if (keys.indexOf(toast.dataset.toastKey) !== -1) toast.remove();
    });
  }

  function csrfToken() {
    var input = document.querySelector("header input[name=csrfmiddlewaretoken]");  // the logout form's
    return input ? input.value : "";
  }

  // A live card comes without the viewer's CSRF token and with every action: drop what the viewer may not
  // do (the server refuses it anyway) and give each form the page's token in place of the stand-in.
  function adopt(slot) {
    slot.querySelectorAll("[data-needs]").forEach(function (el) {
      var ok = el.dataset.needs.split(" ").every(function (need) { return can.indexOf(need) !== -1; });
      if (!ok) el.remove();
    });
    var token = csrfToken();
    slot.querySelectorAll("input[name=csrfmiddlewaretoken]").forEach(function (input) { input.value = token; });
  }

  function busy(slot) {
    // Typing a reason into a card (resolve, silence): the new card waits until the field loses focus.
    var active = document.activeElement;
    return active && slot.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName) && active.value !== "";
  }

  function swap(slot, html) {
    if (shown[slot.dataset.liveCard] === html) return;  // unchanged: keep the DOM (open details, hover) as it is
    if (busy(slot)) { waiting[slot.dataset.liveCard] = html; return; }
    var open = [];
    slot.querySelectorAll("details[open] > summary").forEach(function (s) { open.push(s.textContent); });
    slot.innerHTML = html;
    shown[slot.dataset.liveCard] = html;
    slot.querySelectorAll("details > summary").forEach(function (s) {
      if (open.indexOf(s.textContent) !== -1) s.parentNode.open = true;
    });
    adopt(slot);
  }

  function updateCards(html) {
    document.querySelectorAll("[data-live-card]").forEach(function (slot) {
      var name = slot.dataset.liveCard;
      if (html[name] !== undefined) { delete waiting[name]; swap(slot, html[name]); }
    });
  }

  document.addEventListener("focusout", function (event) {
    var slot = event.target.closest && event.target.closest("[data-live-card]");
    if (!slot || waiting[slot.dataset.liveCard] === undefined) return;
    setTimeout(function () {  // after focus has moved on (a click on the card's own button submits first)
      var html = waiting[slot.dataset.liveCard];
      if (html === undefined || busy(slot)) return;
      delete waiting[slot.dataset.liveCard];
      swap(slot, html);
    }, 0);
  });

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
    var url = scheme + location.host + bar.dataset.liveSocket + (page ? "?page=" + encodeURIComponent(page) : "");
    var socket = new WebSocket(url);
    socket.onopen = function () { retry = FIRST_RETRY; document.body.classList.add("live"); };
    socket.onmessage = function (event) {
      var msg = JSON.parse(event.data);
      if (msg.type !== "state") return;
      if (lost) lost.hidden = true;  // current again: the snapshot replaces whatever was stale
      bar.innerHTML = msg.html.statusbar;
      alerts.innerHTML = msg.html.alerts;
      hideDismissed();
      updateCards(msg.html);
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
      var delay = retry * (0.75 + Math.random() / 2);  // jitter: open pages do not reconnect in step
      document.body.dataset.liveRetryMs = String(Math.round(delay));  // the wait until the next try, for a look
      setTimeout(connect, delay);
      retry = Math.min(retry * 2, MAX_RETRY);
    };
  }

  hideDismissed();
  connect();
})();
