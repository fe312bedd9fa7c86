// The chat page. The conversation lives in this tab's sessionStorage (it survives a reload; the
// server keeps no transcript) and all of it is sent with each turn; the server cuts it to fit the
// model. Answers stream over the websocket one token at a time.
(function () {
  "use strict";
  var root = document.getElementById("chat");
  if (!root || !window.WebSocket) return;
  var STORE = "glmadmin.chat";
  var $ = function (id) { return document.getElementById(id); };
  var log = $("chat-log"), input = $("chat-input"), model = $("chat-model"), indicator = $("chat-model-state");
  var sendButton = $("chat-send"), stopButton = $("chat-stop"), fileInput = $("chat-file");
  var status = $("chat-status"), conn = $("chat-conn");
  // Reconnect as the live pages do (live.js): fast, then at most about a second apart, so the chat is usable
  // again about a second after the server is back (a back-off to 30 s left it "Reconnecting…" for that long).
  var FIRST_RETRY = 250, MAX_RETRY = 1000;
  var socket = null, retry = FIRST_RETRY;
  var turns = load();
  var answer = null; // the answer streaming now: {el, textNode, text, userText}

  function load() {
    try { return JSON.parse(sessionStorage.getItem(STORE) || "{}").messages || []; } catch (e) { return []; }
  }
  function save() {
    sessionStorage.setItem(STORE, JSON.stringify({ messages: turns, model: model.value }));
  }

  // --- drawing ----------------------------------------------------------------------------------
  function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 60; }
  function add(el) {
    var follow = nearBottom();
    $("chat-empty").hidden = true;
    log.appendChild(el);
    if (follow) log.scrollTop = log.scrollHeight;
    return el;
  }
  function element(tag, cls, text) {
    var el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text !== undefined) el.textContent = text;
    return el;
  }
  function drawMessage(message) {
    var el = element("div", "msg msg-" + message.role);
    el.appendChild(element("div", "msg-role", message.role === "user" ? "You" : (message.model || "Assistant")));
    if (message.file) {
      el.classList.add("msg-file");
      var head = element("div", "msg-text");
      head.appendChild(element("strong", "", message.file));
      head.appendChild(element("span", "muted", " · " + message.chars.toLocaleString() + " characters added"));
      el.appendChild(head);
      var details = element("details");
      details.appendChild(element("summary", "", "Show text"));
      details.appendChild(element("pre", "file-text", message.content));
      el.appendChild(details);
    } else {
      el.appendChild(element("div", "msg-text", message.content));
    }
    if (message.note) el.appendChild(element("div", "msg-note", message.note));
    if (message.meta) el.appendChild(element("div", "msg-meta", message.meta));
    return add(el);
  }
  // A notice replaces the ones of its kind and title still shown (a retry while the model loads, a second
  // send while paused): the log shows the current word, not a stack of copies of it.
  function notice(kind, title, text) {
    log.querySelectorAll(".chat-notice-" + kind).forEach(function (old) {
      if (old.dataset.title === title) old.remove();
    });
    var el = element("div", "chat-notice chat-notice-" + kind);
    el.dataset.title = title;
    el.appendChild(element("strong", "", title + " "));
    el.appendChild(document.createTextNode(text));
    return add(el);
  }
  function redraw() {
    log.querySelectorAll(".msg, .chat-notice").forEach(function (el) { el.remove(); });
    $("chat-empty").hidden = turns.length > 0;
    turns.forEach(drawMessage);
  }

  function busy(on) {
    sendButton.disabled = on;
    stopButton.disabled = !on;
    root.classList.toggle("streaming", on);
  }

  // --- model picker and its state ----------------------------------------------------------------
  function showState() {
    var option = model.selectedOptions[0];
    var state = (option && option.dataset.state) || "none";
    indicator.className = "model-state model-state-" + state;
    indicator.textContent = state.charAt(0).toUpperCase() + state.slice(1);
  }
  function updateModels(states) {
    var chosen = model.value || (JSON.parse(sessionStorage.getItem(STORE) || "{}").model);
    var names = Object.keys(states).sort();
    if (chosen && names.indexOf(chosen) === -1) { names.push(chosen); states[chosen] = "gone"; }
    model.innerHTML = "";
    names.forEach(function (name) {
      var option = element("option", "", name);
      option.value = name;
      option.dataset.state = states[name];
      model.appendChild(option);
    });
    if (!names.length) model.appendChild(element("option", "", "no model is served"));
    if (chosen) model.value = chosen;
    showState();
  }
  model.addEventListener("change", function () { showState(); save(); });

  // --- the conversation --------------------------------------------------------------------------
  function send(text) {
    if (answer || !socket || socket.readyState !== WebSocket.OPEN) return false;
    if (text) {
      turns.push({ role: "user", content: text });
      drawMessage(turns[turns.length - 1]);
      save();
    }
    if (!turns.length || turns[turns.length - 1].role !== "user") return false;
    var el = drawMessage({ role: "assistant", content: "", model: model.value });
    el.classList.add("msg-streaming");
    answer = { el: el, textNode: el.querySelector(".msg-text"), text: "", userText: text,
               sentAt: performance.now(), firstAt: null };
    busy(true);
    status.textContent = "Waiting for " + model.value + "…";
    socket.send(JSON.stringify({
      type: "send", model: model.value,
      messages: turns.map(function (m) { return { role: m.role, content: m.content }; }),
      max_tokens: Number($("chat-max-tokens").value) || undefined,
      temperature: $("chat-temperature").value === "" ? undefined : Number($("chat-temperature").value)
    }));
    return true;
  }

  // How the answer went, measured here from the send: the wait for its first text, then the pace of the rest.
  function timing(usage) {
    if (answer.firstAt === null) return "";
    var now = performance.now(), parts = ["first token " + seconds(answer.firstAt - answer.sentAt)];
    var tokens = usage && usage.completion_tokens;
    if (tokens) {
      parts.push(tokens + " token" + (tokens === 1 ? "" : "s") + " in " + seconds(now - answer.sentAt));
      // The first token came with the wait; the rate is of the ones after it, while they streamed.
      if (tokens > 1 && now - answer.firstAt > 0) parts.push(((tokens - 1) * 1000 / (now - answer.firstAt)).toFixed(1) + " tokens/s");
    }
    return parts.join(" · ");
  }
  function seconds(ms) { return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s"; }

  function finish(note, usage) {
    var follow = nearBottom();
    var meta = timing(usage);
    answer.el.classList.remove("msg-streaming");
    if (note) answer.el.appendChild(element("div", "msg-note", note));
    if (meta) answer.el.appendChild(element("div", "msg-meta", meta));
    if (follow) log.scrollTop = log.scrollHeight;
    if (!answer.cleared) turns.push({ role: "assistant", content: answer.text, model: model.value, note: note || "", meta: meta });
    save();
    answer = null;
    busy(false);
  }

  // An answer that never started is taken back: the user's message returns to the input box.
  function withdraw() {
    answer.el.remove();
    if (answer.cleared) { answer = null; busy(false); return; }
    var last = turns[turns.length - 1];
    if (answer.userText && last && last.role === "user" && last.content === answer.userText) {
      turns.pop();
      log.querySelectorAll(".msg-user").forEach(function (el, i, all) { if (i === all.length - 1) el.remove(); });
      if (!input.value) input.value = answer.userText;
      save();
    }
    answer = null;
    busy(false);
  }

  var handlers = {
    models: function (msg) { updateModels(msg.states); },
    trimmed: function (msg) { notice("info", "Context trimmed.", msg.message); },
    // The server sends at most 40 token messages a second (each with every token since the last), so
    // drawing each as it comes keeps up with any engine.
    token: function (msg) {
      if (!answer) return;
      var follow = nearBottom();
      if (answer.firstAt === null) answer.firstAt = performance.now();
      answer.text += msg.text;
      answer.textNode.appendChild(document.createTextNode(msg.text));
      if (follow) log.scrollTop = log.scrollHeight;
      status.textContent = "Streaming…";
    },
    done: function (msg) {
      if (!answer) return;
      var notes = { stopped: "Stopped.", length: "Cut off at the max tokens limit." };
      var note = notes[msg.finish_reason] || "";
      var u = msg.usage;
      finish(note, u);
      // A stopped answer has no usage (the engine never sent it): the status line says why it ended instead
      // of going blank, as if nothing had happened.
      status.textContent = u ? u.prompt_tokens + " prompt + " + u.completion_tokens + " answer tokens" : note;
    },
    error: function (msg) {
      var kept = answer && answer.text;
      if (kept) finish("Broken off: " + msg.message);
      else if (answer) withdraw();
      status.textContent = "";
      var text = sentence(msg.message) + (!kept && input.value ? " Your message is back in the box." : "");
      if (msg.code === "requests_paused") notice("paused", "Paused.", text + " Send it again when the alert clears.");
      else if (msg.code === "model_loading") notice("info", "The model is loading.", text);
      else notice("error", "Not answered.", text);
    }
  };

  function sentence(text) {
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?]$/.test(text) ? text : text + ".";
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + root.dataset.socket);
    socket.onopen = function () { retry = FIRST_RETRY; conn.textContent = ""; root.classList.add("connected"); };
    socket.onmessage = function (event) {
      var msg = JSON.parse(event.data);
      if (handlers[msg.type]) handlers[msg.type](msg);
    };
    socket.onclose = function (event) {
      root.classList.remove("connected");
      // The server aborted the answer when the socket went: keep what arrived.
      if (answer && answer.text) finish("Connection lost."); else if (answer) withdraw();
      if (event.code === 4401) { conn.textContent = "Signed out: reload the page to log in."; return; }
      conn.textContent = "Reconnecting…";
      var delay = retry * (0.75 + Math.random() / 2);  // jitter: open pages do not reconnect in step
      root.dataset.retryMs = String(Math.round(delay));  // the wait until the next try, for a look
      setTimeout(connect, delay);
      retry = Math.min(retry * 2, MAX_RETRY);
    };
  }

  // --- controls ----------------------------------------------------------------------------------
  $("chat-form").addEventListener("submit", function (event) {
    event.preventDefault();
    // An empty box sends what is there already (e.g. an uploaded file as the question).
    if (send(input.value.trim())) input.value = "";
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  stopButton.addEventListener("click", function () {
    if (answer) socket.send(JSON.stringify({ type: "stop" }));
  });
  $("chat-clear").addEventListener("click", function () {
    if (turns.length && !window.confirm("Clear this conversation?")) return;
    if (answer) { answer.cleared = true; socket.send(JSON.stringify({ type: "stop" })); }
    turns = [];
    save();
    redraw();
    status.textContent = "";
  });

  fileInput.addEventListener("change", function () {
    var file = fileInput.files[0];
    fileInput.value = "";
    if (!file) return;
    if (answer) { notice("info", "File not added yet.", "Wait for the answer to finish, then add " + file.name + "."); return; }
    if (file.size > Number(root.dataset.uploadMax)) {
      notice("error", "File not added.", file.name + " is larger than the " + root.dataset.uploadMaxSize + " limit.");
      return;
    }
    status.textContent = "Reading " + file.name + "…";
    var form = new FormData();
    form.append("file", file);
    fetch(root.dataset.uploadUrl, {
      method: "POST", body: form, credentials: "same-origin",
      headers: { "X-CSRFToken": document.querySelector("#chat-form [name=csrfmiddlewaretoken]").value }
    }).then(function (response) {
      return response.json().catch(function () { return { error: "The server answered " + response.status + "." }; });
    }).then(function (result) {
      status.textContent = "";
      if (result.error) { notice("error", "File not added.", result.error); return; }
      turns.push({ role: "user", content: "File " + result.name + ":\n\n" + result.text,
                     file: result.name, chars: result.chars });
      drawMessage(turns[turns.length - 1]);
      save();
    }).catch(function () {
      status.textContent = "";
      notice("error", "File not added.", "The upload failed: is the server reachable?");
    });
  });

  var saved = JSON.parse(sessionStorage.getItem(STORE) || "{}").model;
  if (saved && Array.prototype.some.call(model.options, function (o) { return o.value === saved; })) model.value = saved;
  showState();
  redraw();
  connect();
})();
