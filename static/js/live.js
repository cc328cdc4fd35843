/* GUARDiA live updates: a small reconnecting WebSocket client that updates the page in
   place (no reload). Events arrive as JSON {kind, task_id, status, message, data}, one per
   frame or several in an array (what one change produced together).

   Wiring is by data attributes so templates need no inline script:
     <body data-live-user>                 -> /ws/live/ (own inbox, participants' tasks, console)
     <section data-live-task="OPS-...">    -> /ws/tasks/<task_id>/
     #task-status                          -> status badge, text from #status-labels
     #timeline                             -> <ol> that receives new lines (event.data.line)
     [data-task-row="OPS-..."] .badge      -> status badges in task lists
     #unread-count                         -> inbox counter
     [data-live-region] (with an id)       -> re-read from the server and replaced
     [data-live-list] (children with ids)  -> re-read and merged: new children appear, gone
                                              ones leave, children being edited stay as they are

   Text from events is written with textContent only. Regions are re-read from the same
   page on this server (the HTML a reload would give), never built from event text.
*/
(function () {
  "use strict";

  var labels = {};
  var labelNode = document.getElementById("status-labels");
  if (labelNode) {
    try { labels = JSON.parse(labelNode.textContent); } catch (e) { labels = {}; }
  }
  var leaving = false;
  // A refresh racing a navigation could take the next page's flash messages; a page still
  // here a few seconds later did not navigate (a download, a cancelled unload).
  window.addEventListener("beforeunload", function () {
    leaving = true;
    window.setTimeout(function () { leaving = false; }, 5000);
  });

  function wsUrl(path) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + path;
  }

  /* Reconnect with capped exponential backoff; a closed network still drops links. */
  function connect(path, onEvent) {
    var delay = 500;
    var indicator = document.getElementById("live-state");
    function setState(on) {
      // Also on <html>, for pages without an indicator (and for the browser tests).
      document.documentElement.dataset.live = on ? "on" : "off";
      if (!indicator) { return; }
      indicator.className = "live-state " + (on ? "on" : "off");
      indicator.textContent = on ? indicator.dataset.on || "live" : indicator.dataset.off || "offline";
    }
    function open() {
      var socket = new WebSocket(wsUrl(path));
      socket.onopen = function () { delay = 500; setState(true); };
      socket.onmessage = function (message) {
        var parsed;
        try { parsed = JSON.parse(message.data); } catch (e) { return; }
        // One frame carries one event, or an array of the events one change produced
        // together (a transition and its timeline line), handled in order.
        var list = Array.isArray(parsed) ? parsed : [parsed];
        for (var i = 0; i < list.length; i++) {
          if (!list[i] || typeof list[i] !== "object") { continue; }
          onEvent(list[i]);
          document.dispatchEvent(new CustomEvent("guardia:event", { detail: list[i] }));
        }
      };
      socket.onclose = function (close) {
        setState(false);
        // 4401/4403: not logged in or not allowed; retrying would not help.
        if (close.code === 4401 || close.code === 4403) { return; }
        window.setTimeout(open, delay);
        delay = Math.min(delay * 2, 15000);
      };
    }
    open();
  }

  function setBadge(node, status, fallbackLabel) {
    if (!node || !status) { return; }
    node.textContent = labels[status] || fallbackLabel || status;
    node.className = node.className.replace(/\bs-[A-Z_]+\b/g, "").trim() + " s-" + status;
    node.dataset.status = status;
  }

  /* The same markup the task page renders for a saved line (templates/console/task_detail.html);
     the server formats the line (text, Korean kind, time in its own zone), the browser only places it. */
  function appendTimeline(event) {
    var list = document.getElementById("timeline");
    var line = event.data && event.data.line;
    if (!list || !line) { return; }
    var item = document.createElement("li");
    item.className = "live k-" + String(line.kind || "event").toLowerCase().replace(/[^a-z0-9_-]/g, "");
    var time = document.createElement("time");
    time.dateTime = line.iso || "";
    time.textContent = line.when || "";
    var kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = line.kind_label || line.kind || "";
    item.appendChild(time);
    item.appendChild(kind);
    if (line.actor) {
      var actor = document.createElement("strong");
      actor.textContent = line.actor;
      item.appendChild(actor);
      item.appendChild(document.createTextNode(" · "));
    }
    item.appendChild(document.createTextNode(line.text || ""));
    list.appendChild(item);
    var empty = document.getElementById("timeline-empty");
    if (empty) { empty.remove(); }
  }

  function updateRows(event) {
    if (!event.task_id || !event.status) { return; }
    var rows = document.querySelectorAll('[data-task-row="' + CSS.escape(event.task_id) + '"] .badge[class*="s-"]');
    var label = event.data && event.data.status_label;
    for (var i = 0; i < rows.length; i++) { setBadge(rows[i], event.status, label); }
  }

  /* A region someone is typing into is left alone this time; the next event retries. */
  function beingEdited(node) {
    var active = document.activeElement;
    if (active && active !== document.body && node.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
      return true;
    }
    var fields = node.querySelectorAll("textarea, input[type=text]");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) { return true; }
    }
    return false;
  }

  function mergeList(current, fresh) {
    var wanted = {};
    var freshChildren = Array.prototype.slice.call(fresh.children);
    freshChildren.forEach(function (child) { if (child.id) { wanted[child.id] = true; } });
    Array.prototype.slice.call(current.children).forEach(function (child) {
      if (!child.id || !wanted[child.id]) { child.remove(); }
    });
    freshChildren.forEach(function (child, index) {
      if (!child.id || document.getElementById(child.id)) { return; }
      var node = document.importNode(child, true);
      node.classList.add("live-new");
      current.insertBefore(node, current.children[index] || null);
    });
  }

  var refreshTimer = null;
  var refreshing = false;
  var again = false;
  function scheduleRefresh() {
    if (!document.querySelector("[data-live-region], [data-live-list]")) { return; }
    if (refreshing) { again = true; return; }
    if (refreshTimer) { return; }
    refreshTimer = window.setTimeout(refresh, 400);
  }

  function refresh() {
    refreshTimer = null;
    if (leaving) { return; }
    refreshing = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live-Refresh": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html || leaving) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live-region]").forEach(function (node) {
          var fresh = node.id && doc.getElementById(node.id);
          if (fresh && !beingEdited(node)) { node.replaceWith(document.importNode(fresh, true)); }
        });
        document.querySelectorAll("[data-live-list]").forEach(function (node) {
          var fresh = node.id && doc.getElementById(node.id);
          if (fresh) { mergeList(node, fresh); }
        });
        document.dispatchEvent(new CustomEvent("guardia:refreshed"));
      })
      .catch(function () { /* the next event retries */ })
      .then(function () {
        refreshing = false;
        if (again) { again = false; scheduleRefresh(); }
      });
  }

  // Events that change what the approval tables, lists, tiles and prompts show. Execution
  // steps (one per command on every server) do not: they only add timeline lines.
  function changesRegions(event) {
    if (event.kind === "transition" || event.kind === "notification") { return true; }
    if (event.kind === "step") { return !(event.data && event.data.server); }
    if (event.kind === "timeline") {
      var action = (event.data && event.data.action) || "";
      return action !== "execution.step" && action !== "notification";
    }
    return false;
  }

  var taskNode = document.querySelector("[data-live-task]");
  if (taskNode) {
    var taskId = taskNode.dataset.liveTask;
    connect("/ws/tasks/" + encodeURIComponent(taskId) + "/", function (event) {
      if (event.task_id && event.task_id !== taskId) { return; }
      if (event.status && event.kind === "transition") {
        setBadge(document.getElementById("task-status"), event.status, event.data && event.data.status_label);
      }
      appendTimeline(event);
      if (changesRegions(event)) { scheduleRefresh(); }
    });
  }

  if (document.body.hasAttribute("data-live-user")) {
    connect("/ws/live/", function (event) {
      updateRows(event);
      if (changesRegions(event)) { scheduleRefresh(); }
      if (event.kind === "notification") {
        var counter = document.getElementById("unread-count");
        if (counter) {
          counter.textContent = String((parseInt(counter.textContent, 10) || 0) + 1);
          counter.hidden = false;
        }
      }
      // A global stop event has no task id (a per-task stop has one): show or drop the banner.
      if (event.kind === "stop" && !event.task_id) {
        var banner = document.getElementById("global-stop-banner");
        var engaged = event.status === "ENGAGED";
        if (engaged && !banner) {
          banner = document.createElement("div");
          banner.id = "global-stop-banner";
          banner.setAttribute("role", "alert");
          document.body.insertBefore(banner, document.body.firstChild);
        }
        if (banner) {
          if (engaged) { banner.textContent = "\u26d4 " + event.message; } else { banner.remove(); }
        }
      }
    });
  }

  // The new-request page's sample WAR follows the version typed next to it.
  document.querySelectorAll("[data-demo-artifact]").forEach(function (link) {
    var field = document.getElementById(link.dataset.demoArtifact);
    if (!field) { return; }
    var base = link.href.split("?")[0];
    function follow() {
      var version = field.value.trim();
      if (!/^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$/.test(version)) { return; }
      link.href = base + "?version=" + encodeURIComponent(version);
      link.textContent = "guardia-demo-" + version + ".war";
    }
    field.addEventListener("input", follow);
    follow();
  });
})();
