/* Accessibility helpers shared by every page.

   - A failed submit: the error summary at the top of <main> takes focus, so a screen reader
     reads what went wrong and a keyboard user is next to the links to each field.
   - Live updates (static/js/live.js dispatches "guardia:event" and "guardia:refreshed"):
     one short polite summary in #live-announcer instead of every changed line; a stopped
     task goes to the assertive #live-alert. Events that arrive together are summed up in one
     sentence after a short pause, so a burst of execution steps is one announcement.

   All text is written with textContent; the words come from data attributes the server
   rendered in the page's language. */
(function () {
  "use strict";

  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }

  // A link in the error summary focuses its field (not only scrolls to it).
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest(".error-summary a[href^='#']");
    if (!link) { return; }
    var field = document.getElementById(link.getAttribute("href").slice(1));
    if (!field) { return; }
    event.preventDefault();
    field.focus();
    field.scrollIntoView({ block: "center" });
  });

  var polite = document.getElementById("live-announcer");
  var assertive = document.getElementById("live-alert");
  if (!polite) { return; }
  var words = polite.dataset;

  function count(template, n) { return template.replace("{n}", String(n)); }

  function say(region, text) {
    if (!region || !text) { return; }
    // Emptied first so the same sentence twice is announced twice.
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  // Keyed, because a task page hears the same event on its task socket and on the user's.
  function empty() { return { statuses: {}, order: [], lines: {}, lineCount: 0, lastLine: "", unread: false, tiles: "" }; }
  var pending = empty();
  var timer = null;
  function flush() {
    timer = null;
    var parts = [];
    var statuses = pending.order.map(function (key) { return pending.statuses[key]; });
    if (statuses.length === 1) {
      parts.push(statuses[0]);
    } else if (statuses.length > 1) {
      parts.push(count(words.several, statuses.length) + ". " + statuses[statuses.length - 1]);
    }
    if (pending.lineCount === 1) {
      parts.push(pending.lastLine);
    } else if (pending.lineCount > 1) {
      parts.push(count(words.lines, pending.lineCount));
    }
    if (pending.unread) {
      var counter = document.getElementById("unread-count");
      if (counter) { parts.push(count(words.unread, counter.hidden ? 0 : counter.textContent.trim())); }
    }
    if (pending.tiles) { parts.push(words.tiles + ": " + pending.tiles); }
    pending = empty();
    say(polite, parts.join(". "));
  }
  function later() {
    if (!timer) { timer = window.setTimeout(flush, 1500); }
  }

  var taskNode = document.querySelector("[data-live-task]");
  var ownTask = taskNode ? taskNode.dataset.liveTask : null;

  document.addEventListener("guardia:event", function (custom) {
    var event = custom.detail || {};
    var data = event.data || {};
    if (event.kind === "stop") {
      if (event.task_id && ownTask && event.task_id !== ownTask) { return; }
      if (!event.task_id) {
        // An engaged global stop is announced by its banner (role=alert, inserted by live.js).
        if (event.status === "RELEASED") { say(polite, words.stopReleased); }
        return;
      }
      say(assertive, event.task_id + " " + words.taskStop);
      return;
    }
    if (event.kind === "transition" && event.status && (!ownTask || event.task_id === ownTask)) {
      var label = data.status_label || event.status;
      var key = (event.task_id || "") + "|" + event.status;
      if (!pending.statuses[key]) { pending.order.push(key); }
      // A task that moves twice in one burst is told once, in its latest state.
      pending.order = pending.order.filter(function (k) {
        return k === key || k.split("|")[0] !== (event.task_id || "");
      });
      pending.statuses[key] = (event.task_id ? event.task_id + " " : "") + words.status + ": " + label;
      later();
    }
    if (ownTask && data.line && (!event.task_id || event.task_id === ownTask)) {
      var text = [data.line.kind_label || "", data.line.actor || "", data.line.text || ""].filter(Boolean).join(" · ");
      var lineKey = (data.line.iso || "") + "|" + text;
      if (!pending.lines[lineKey]) {
        pending.lines[lineKey] = true;
        pending.lineCount += 1;
        pending.lastLine = text;
        later();
      }
    }
    if (event.kind === "notification") {
      pending.unread = true;
      later();
    }
  });

  // Dashboard tiles are re-read from the server; their new counts join the next summary.
  function tileText() {
    var tiles = document.getElementById("tiles");
    if (!tiles) { return ""; }
    return Array.prototype.map.call(tiles.querySelectorAll(".tile"), function (tile) {
      var label = tile.querySelector(".label");
      var value = tile.querySelector(".value");
      return (label ? label.textContent.trim() : "") + " " + (value ? value.textContent.trim() : "");
    }).join(", ");
  }
  var tilesBefore = tileText();
  document.addEventListener("guardia:refreshed", function () {
    var now = tileText();
    if (now && now !== tilesBefore) { pending.tiles = now; later(); }
    tilesBefore = now;
  });
})();
