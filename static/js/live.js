/* GUARDiA live updates: a small reconnecting WebSocket client that updates the page in
   place (no reload). Events arrive as JSON {kind, task_id, status, message, data}.

   Wiring is by data attributes so templates need no inline script:
     <body data-live-user>                 -> /ws/live/ (own inbox + console group)
     <section data-live-task="OPS-...">    -> /ws/tasks/<task_id>/
     #task-status                          -> status badge, text from #status-labels
     #timeline                             -> <ol> that receives new entries
     [data-task-row="OPS-..."] .badge      -> status badges in task lists
     #unread-count                         -> inbox counter
*/
(function () {
  "use strict";

  var labels = {};
  var labelNode = document.getElementById("status-labels");
  if (labelNode) {
    try { labels = JSON.parse(labelNode.textContent); } catch (e) { labels = {}; }
  }

  function wsUrl(path) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + path;
  }

  /* Reconnect with capped exponential backoff; a closed network still drops links. */
  function connect(path, onEvent) {
    var delay = 500;
    var indicator = document.getElementById("live-state");
    function setState(on) {
      if (!indicator) { return; }
      indicator.className = "live-state " + (on ? "on" : "off");
      indicator.textContent = on ? indicator.dataset.on || "live" : indicator.dataset.off || "offline";
    }
    function open() {
      var socket = new WebSocket(wsUrl(path));
      socket.onopen = function () { delay = 500; setState(true); };
      socket.onmessage = function (message) {
        var event;
        try { event = JSON.parse(message.data); } catch (e) { return; }
        onEvent(event);
        document.dispatchEvent(new CustomEvent("guardia:event", { detail: event }));
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

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function appendTimeline(event) {
    var list = document.getElementById("timeline");
    if (!list || !event.message) { return; }
    var item = document.createElement("li");
    item.className = "live k-" + (event.kind || "event");
    var time = document.createElement("time");
    var now = event.data && event.data.time ? new Date(event.data.time) : new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.getFullYear() + "-" + two(now.getMonth() + 1) + "-" + two(now.getDate()) + " " +
      two(now.getHours()) + ":" + two(now.getMinutes()) + ":" + two(now.getSeconds());
    var kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = event.kind || "";
    var text = document.createElement("span");
    text.textContent = event.message;  // textContent: event text is never parsed as HTML
    item.appendChild(time);
    item.appendChild(kind);
    item.appendChild(text);
    list.appendChild(item);
    var empty = document.getElementById("timeline-empty");
    if (empty) { empty.remove(); }
  }

  function updateRows(event) {
    if (!event.task_id || !event.status) { return; }
    var rows = document.querySelectorAll('[data-task-row="' + CSS.escape(event.task_id) + '"] .badge');
    var label = event.data && event.data.status_label;
    for (var i = 0; i < rows.length; i++) { setBadge(rows[i], event.status, label); }
  }

  var taskNode = document.querySelector("[data-live-task]");
  if (taskNode) {
    var taskId = taskNode.dataset.liveTask;
    connect("/ws/tasks/" + encodeURIComponent(taskId) + "/", function (event) {
      if (event.task_id && event.task_id !== taskId) { return; }
      if (event.status) {
        setBadge(document.getElementById("task-status"), event.status, event.data && event.data.status_label);
      }
      appendTimeline(event);
    });
  }

  // Dashboard tiles: re-read the (permission-scoped) counts, at most once a second.
  var tilesTimer = null;
  function refreshTiles() {
    if (!document.getElementById("tile-waiting") || tilesTimer) { return; }
    tilesTimer = window.setTimeout(function () {
      tilesTimer = null;
      fetch("/console/tiles/", { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (counts) {
          if (!counts) { return; }
          Object.keys(counts).forEach(function (key) {
            var tile = document.getElementById("tile-" + key);
            if (tile) { tile.textContent = String(counts[key]); }
          });
        })
        .catch(function () { /* the next event retries */ });
    }, 1000);
  }

  if (document.body.hasAttribute("data-live-user")) {
    connect("/ws/live/", function (event) {
      updateRows(event);
      if (event.kind === "transition") { refreshTiles(); }
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
})();
