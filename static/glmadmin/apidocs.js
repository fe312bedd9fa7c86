// "Try it" on the API docs page: send the request with the key typed in and show the answer as it arrives.
(function () {
  "use strict";
  const base = window.location.origin + "/v1";
  document.querySelectorAll("[data-base-url]").forEach((el) => { el.textContent = base; });

  async function send(form) {
    const result = form.nextElementSibling;
    const output = result.querySelector("[data-output]");
    const status = result.querySelector("[data-status]");
    const took = result.querySelector("[data-took]");
    const options = { method: form.dataset.method, headers: { Authorization: "Bearer " + form.key.value.trim() } };
    if (form.body) {
      options.headers["Content-Type"] = "application/json";
      options.body = form.body.value;
    }
    result.hidden = false;
    output.textContent = "";
    status.textContent = "…";
    took.textContent = "";
    const started = performance.now();
    try {
      const response = await fetch(form.dataset.path, options);
      status.textContent = response.status + " " + response.statusText;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let first = null;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (first === null) first = performance.now() - started;
        output.textContent += decoder.decode(value, { stream: true });  // streamed answers show as they come
      }
      if ((response.headers.get("content-type") || "").startsWith("application/json")) {
        try { output.textContent = JSON.stringify(JSON.parse(output.textContent), null, 2); } catch (e) { /* as sent */ }
      }
      took.textContent = "first byte " + Math.round(first || 0) + " ms, total " + Math.round(performance.now() - started) + " ms";
    } catch (error) {
      status.textContent = "no answer";
      output.textContent = String(error);
    }
  }

  document.querySelectorAll(".api-form").forEach((form) => {
    form.addEventListener("submit", (event) => { event.preventDefault(); send(form); });
  });
})();
