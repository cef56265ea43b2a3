// The live run page: one small JSON request per second at most (`/runs/<id>/live/?after=SEQ`)
// returns the status, the progress and the log lines after SEQ. Polling stops when the run
// (and the rollback that took over, if any) has finished. Works on the server-rendered page:
// without JavaScript the page simply shows the state at load time.
(function () {
  "use strict";
  var root = document.querySelector("[data-run-live]");
  if (!root) return;

  var INTERVAL = 1000;
  var url = root.getAttribute("data-poll-url");
  var after = parseInt(root.getAttribute("data-last-seq"), 10) || 0;
  var havePlan = root.getAttribute("data-have-plan") === "1";
  var log = document.getElementById("run-log");
  var progressBar = document.getElementById("run-progress");
  var failures = 0;

  function bind(name) { return root.querySelector('[data-bind="' + name + '"]'); }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function badge(status, tone, label) {
    var node = el("span", "badge badge--" + tone, label);
    node.setAttribute("data-status", status);
    return node;
  }
  function replace(container, node) {
    if (!container) return;
    container.textContent = "";
    container.appendChild(node);
  }
  function show(node, visible) { if (node) node.hidden = !visible; }

  // -- log with autoscroll that stops while the reader has scrolled up ---------------------
  function atBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 24; }
  var jump = bind("jump");
  log.addEventListener("scroll", function () { if (atBottom()) show(jump, false); });
  if (jump) jump.addEventListener("click", function () { log.scrollTop = log.scrollHeight; show(jump, false); });
  log.scrollTop = log.scrollHeight;

  function appendEvents(events) {
    if (!events.length) return;
    var follow = atBottom();
    var empty = bind("log-empty");
    if (empty) empty.remove();
    var fragment = document.createDocumentFragment();
    events.forEach(function (event) {
      var line = el("div", "log-line log-" + event.level + " log-kind-" + event.kind);
      line.setAttribute("data-seq", event.seq);
      line.appendChild(el("span", "log-time", event.time));
      line.appendChild(el("span", "log-msg", event.message));
      fragment.appendChild(line);
    });
    log.appendChild(fragment);
    if (follow) log.scrollTop = log.scrollHeight;
    else show(jump, true);
  }

  // -- status, stages, progress ---------------------------------------------------------------
  function renderProgress(progress) {
    if (progress.planned) {
      progressBar.max = progress.planned;
      progressBar.value = progress.done;
      bind("progress-text").textContent = progress.done + " of " + progress.planned + " resources (" + progress.percent + "%)";
    }
  }

  function renderStages(states) {
    root.querySelectorAll(".stage").forEach(function (step, index) {
      var state = states[index] || "todo";
      step.className = "stage stage--" + state;
      if (state === "current") step.setAttribute("aria-current", "step");
      else step.removeAttribute("aria-current");
      var hidden = step.querySelector(".stage__state");
      if (hidden) hidden.textContent = "(" + state + ")";
    });
  }

  function renderPlan(plan) {
    var box = el("div");
    var counts = el("p", "plan-counts");
    counts.appendChild(el("span", "plan-add", "+" + plan.add + " to add"));
    counts.appendChild(el("span", "plan-change", "~" + plan.change + " to change"));
    counts.appendChild(el("span", "plan-destroy", "\u2212" + plan.destroy + " to destroy"));
    box.appendChild(counts);
    if (plan.resources && plan.resources.length) {
      var table = el("table", "table table--compact");
      var head = table.createTHead().insertRow();
      ["Resource", "Action"].forEach(function (title) { var th = el("th", "", title); th.scope = "col"; head.appendChild(th); });
      var body = table.createTBody();
      plan.resources.forEach(function (resource) {
        var row = body.insertRow();
        row.appendChild(el("td", "mono small", resource.address));
        row.appendChild(el("td", "", (resource.actions || []).join(", ")));
      });
      var wrap = el("div", "table-wrap");
      wrap.appendChild(table);
      box.appendChild(wrap);
    }
    replace(bind("plan"), box);
    havePlan = true;
  }

  function renderEndpoints(endpoints) {
    if (!endpoints || !endpoints.length) return;
    var list = bind("endpoints");
    list.textContent = "";
    endpoints.forEach(function (endpoint) {
      var item = el("li");
      item.appendChild(el("span", "badge badge--muted", endpoint.kind));
      item.appendChild(document.createTextNode(" "));
      var link = el("a", "endpoint", endpoint.fqdn);
      link.href = endpoint.url;
      link.target = "_blank";
      link.rel = "noopener";
      item.appendChild(link);
      list.appendChild(item);
    });
    show(bind("endpoints-box"), true);
  }

  function render(data) {
    replace(bind("run-status"), badge(data.status, data.tone, data.status_label));
    replace(bind("env-status"), badge(data.environment.status, data.environment.tone, data.environment.status_label));
    bind("elapsed").textContent = data.elapsed;
    bind("stage").textContent = data.stage;
    renderStages(data.stages);
    renderProgress(data.progress);
    var queue = bind("queue");
    queue.textContent = data.queue || "";
    show(queue, !!data.queue);
    show(bind("cancel-note"), data.cancel_requested && !data.terminal);
    if (data.explanation) {
      var box = bind("explanation-box");
      box.className = "alert alert--" + data.tone + " explanation";
      bind("explanation").textContent = data.explanation;
      bind("env-reason").textContent = data.environment.reason || "";
      show(box, true);
    }
    if (data.rollback) {
      bind("rollback-link").href = data.rollback.url;
      bind("rollback-id").textContent = data.rollback.id;
      replace(bind("rollback-status"), badge(data.rollback.status, data.rollback.tone, data.rollback.status_label));
      var undo = data.rollback.progress;
      bind("rollback-progress").textContent = undo.planned ? undo.done + " of " + undo.planned + " resources destroyed" : "";
      show(bind("rollback"), true);
    }
    if (data.plan) renderPlan(data.plan);
    if (data.endpoints) renderEndpoints(data.endpoints);
    if (data.terminal) root.querySelectorAll("[data-hide-when-terminal]").forEach(function (node) { show(node, false); });
    appendEvents(data.events);
    after = data.last_seq;
  }

  // -- the poll loop: the next request starts a second after the previous one ended ------------
  function tick() {
    var query = "?after=" + after + (havePlan ? "" : "&plan=1");
    fetch(url + query, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        render(data);
        root.setAttribute("data-poll", data.poll ? "1" : "0");
        if (data.poll) window.setTimeout(tick, INTERVAL);
      })
      .catch(function () {
        // Back off while the portal is unreachable (restart, network), up to 30 s.
        failures += 1;
        window.setTimeout(tick, Math.min(30000, INTERVAL * Math.pow(2, failures)));
      });
  }

  if (root.getAttribute("data-poll") === "1") window.setTimeout(tick, INTERVAL);
})();
