/* GUARDiA field app (PWA) front end. Wired by ids and data attributes rendered by the
   server (templates/app/); all text comes from the page and is written with textContent.

   - registers the service worker (/app/sw.js, scope /app/) and offers notifications;
   - the offline draft queue (drafts.js): filings made without a connection are kept in
     IndexedDB and sent when the connection returns;
   - the compose page: scope-limited pickers, per-template inputs, SHA-256 of every chosen
     file computed here with SubtleCrypto (the server re-hashes and compares), the plan
     preview rendered by the server before filing, and the large-key keypad that inserts
     shell characters at the cursor. */
(function () {
  "use strict";

  var body = document.body;
  var csrf = (document.querySelector("meta[name=csrf-token]") || {}).content || "";
  var submitUrl = body.dataset.submitUrl || "/app/submit";
  var me = body.dataset.user || "";
  var net = document.getElementById("net-state");

  function text(template, values) {
    return String(template || "").replace(/\{(\w+)\}/g, function (_m, key) {
      return values && values[key] !== undefined ? String(values[key]) : "";
    });
  }

  function say(message) {
    if (!net) { return; }
    net.textContent = message || "";
    net.hidden = !message;
  }

  // --- service worker and notifications ---------------------------------------------------
  var registration = null;
  if ("serviceWorker" in navigator && body.dataset.sw) {
    navigator.serviceWorker.register(body.dataset.sw, { scope: "/app/" }).then(function (reg) {
      registration = reg;
      document.documentElement.dataset.sw = "registered";
    }).catch(function () { document.documentElement.dataset.sw = "failed"; });
    navigator.serviceWorker.addEventListener("message", function (event) {
      if (event.data && event.data.type === "drafts-sent") {
        var messages = (event.data.items || []).map(function (item) { return describeResult(item.title, item); });
        if (messages.length) { say(messages.join(" ")); refreshList(); }
        showQueue();
      }
    });
  }

  // Logging out drops the cached pages (they show this user's requests); queued drafts stay
  // on the device until filed, by whoever logs in next as the same user.
  document.querySelectorAll("form[action$='/logout/']").forEach(function (logout) {
    logout.addEventListener("submit", function (event) {
      if (!window.caches || logout.dataset.cleared) { return; }
      event.preventDefault();
      caches.keys().then(function (keys) {
        return Promise.all(keys.filter(function (key) { return key.indexOf("guardia-app-") === 0; })
          .map(function (key) { return caches.delete(key); }));
      }).catch(function () {}).then(function () {
        logout.dataset.cleared = "1";
        logout.submit();
      });
    });
  });

  var notifyButton = document.getElementById("enable-notifications");
  if (notifyButton && "Notification" in window && Notification.permission === "default") {
    notifyButton.hidden = false;
    notifyButton.addEventListener("click", function () {
      Notification.requestPermission().then(function () { notifyButton.hidden = true; });
    });
  }

  function notify(title, message, tag) {
    if (!("Notification" in window) || Notification.permission !== "granted" || !("serviceWorker" in navigator)) {
      return;
    }
    navigator.serviceWorker.ready.then(function (reg) {
      // Shown by the worker: it works in an installed app and when the tab is in the background.
      return reg.showNotification(title, { body: message, tag: tag, lang: "ko",
                                           icon: "/static/app/icons/icon-192.png", data: { url: "/app/" } });
    }).catch(function () {});
  }

  // A status change of one of my requests (live.js relays the socket's events).
  document.addEventListener("guardia:event", function (event) {
    var data = event.detail || {};
    if (data.kind !== "transition" || !data.task_id) { return; }
    var row = document.querySelector('[data-task-row="' + CSS.escape(data.task_id) + '"]');
    if (!row) { return; }
    var label = (data.data && data.data.status_label) || data.status;
    notify("GUARDiA · " + data.task_id, (row.dataset.notifyTitle || "") + " → " + label, data.task_id);
  });

  // --- the offline queue -------------------------------------------------------------------
  var queued = document.getElementById("queued");
  var queuedList = document.getElementById("queued-list");

  function showQueue() {
    if (!window.GuardiaDrafts) { return Promise.resolve(); }
    return GuardiaDrafts.list(me).then(function (drafts) {
      document.documentElement.dataset.queued = String(drafts.length);
      if (queued && queuedList) {
        queuedList.textContent = "";
        drafts.forEach(function (draft) {
          var item = document.createElement("li");
          item.className = "card queued";
          item.textContent = draft.title;
          queuedList.appendChild(item);
        });
        queued.hidden = drafts.length === 0;
      }
      if (!navigator.onLine) {
        say(net.dataset.offline + (drafts.length ? " " + text(net.dataset.queued, { n: drafts.length }) : ""));
      }
      return drafts;
    });
  }

  function refreshList() {
    var list = document.getElementById("my-requests");
    if (!list) { return; }
    fetch(window.location.pathname, { credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (!html) { return; }
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("my-requests");
      if (fresh) { list.replaceWith(document.importNode(fresh, true)); }
    }).catch(function () {});
  }

  function describeResult(title, result) {
    if (result.ok && result.body.task_id) { return text(net.dataset.sent, { id: result.body.task_id }); }
    if (result.ok && result.body.clarification) {
      // Filed as a draft with a question (free text): answered from the compose page.
      return text(net.dataset.failed, { title: title, error: result.body.clarification.question });
    }
    var errors = (result.body && result.body.errors) || {};
    var first = Object.keys(errors)[0];
    return text(net.dataset.failed, { title: title, error: first ? first + ": " + errors[first] : result.status });
  }

  var flushing = null;
  function flush() {
    if (!window.GuardiaDrafts || !navigator.onLine || flushing) { return flushing; }
    var messages = [];
    flushing = GuardiaDrafts.flush(submitUrl, csrf, function (draft, result) {
      messages.push(describeResult(draft.title, result));
      if (result.ok && result.body.task_id) { notify("GUARDiA", messages[messages.length - 1], "draft-" + draft.id); }
    }, me).catch(function () {}).then(function () {
      flushing = null;
      if (messages.length) { say(messages.join(" ")); refreshList(); }
      document.documentElement.dataset.flushed = String(Date.now());
      return showQueue();
    });
    return flushing;
  }

  window.addEventListener("online", function () { say(""); flush(); updateOnline(); });
  window.addEventListener("offline", function () { showQueue(); updateOnline(); });
  showQueue().then(function () { if (navigator.onLine) { flush(); } });

  // --- the compose page ----------------------------------------------------------------------
  var form = document.getElementById("request-form");
  var previewButton = document.getElementById("preview-button");
  var submitButton = document.getElementById("submit-button");
  var queueButton = document.getElementById("queue-button");
  var preview = document.getElementById("preview");

  function updateOnline() {
    if (!form) { return; }
    var online = navigator.onLine;
    previewButton.hidden = !online;
    queueButton.hidden = online;
    if (!online) { submitButton.hidden = true; }
  }

  if (!form) { return; }

  var systemSelect = document.getElementById("f-system");
  var subTypeSelect = document.getElementById("f-sub_type");
  var textParams = document.getElementById("text-params");

  function mode() { return (form.querySelector("input[name=mode]:checked") || {}).value || "template"; }

  function invalidate() {
    submitButton.hidden = true;
    preview.hidden = true;
    preview.textContent = "";
  }

  function syncVisibility() {
    var textMode = mode() === "text";
    form.querySelectorAll("[data-mode=template]").forEach(function (node) {
      if (node.classList.contains("template-fields")) {
        node.hidden = textMode || node.dataset.template !== subTypeSelect.value;
      } else {
        node.hidden = textMode;
      }
    });
    // Free text: only the inputs the parser asked for (they stay once asked).
    textParams.hidden = !textMode || !textParams.querySelector("[data-asked]:not([hidden])");
    form.querySelectorAll("#target-list [data-system]").forEach(function (label) {
      var shown = label.dataset.system === systemSelect.value;
      label.hidden = !shown;
      if (!shown) { label.querySelector("input").checked = false; }
    });
  }

  var clarified = {};
  preview.addEventListener("click", function (event) {
    // A history hint's first step ("로그 정리를 먼저 할까요?"): read the request again as that task.
    var hint = event.target.closest("[data-hint-sub-type]");
    if (!hint) { return; }
    clarified.task_sub_type = hint.dataset.hintSubType;
    previewButton.click();
  });
  form.addEventListener("change", function (event) {
    if (preview.contains(event.target)) {
      // An answer to the parser's question: read the request again with it.
      var field = event.target.dataset.clarify;
      if (!field || field === "params") { return; }  // answered in the inputs below the text
      clarified[field === "sub_type" ? "task_sub_type" : field] = field === "targets" ? [event.target.value] : event.target.value;
      previewButton.click();
      return;
    }
    if (event.target.matches("input[type=file]")) { hashFile(event.target); }
    syncVisibility();
    invalidate();
  });
  form.addEventListener("input", function (event) {
    if (event.target.id === "f-raw_request") { clarified = {}; }
    invalidate();
  });
  syncVisibility();
  updateOnline();

  // SHA-256 in the browser: shown to the requester and sent with the file; the server
  // refuses the filing when the bytes it received hash to anything else.
  var hashes = new WeakMap();
  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function hashFile(input) {
    var line = input.parentNode.querySelector("[data-hash-for]");
    var file = input.files && input.files[0];
    if (!file) { hashes.delete(input); if (line) { line.textContent = ""; } return; }
    var promise = file.arrayBuffer().then(function (data) { return crypto.subtle.digest("SHA-256", data); }).then(hex);
    hashes.set(input, promise);
    promise.then(function (sha) {
      if (line) { line.textContent = "SHA-256 " + sha + " · " + file.size.toLocaleString("ko-KR") + " B"; }
      input.dataset.sha256 = sha;
    });
  }

  function activeTemplate() {
    return form.querySelector('.template-fields[data-template="' + CSS.escape(subTypeSelect.value) + '"]');
  }

  function collect() {
    var fieldset = mode() === "text" ? textParams : activeTemplate();
    var parameters = {};
    var uploads = [];
    if (fieldset) {
      fieldset.querySelectorAll("[data-param]").forEach(function (input) {
        if (input.closest("[hidden]") && fieldset === textParams) { return; }
        var value = input.value.trim();
        if (value === "") { return; }
        parameters[input.dataset.param] = input.type === "number" ? Number(value) : value;
      });
      fieldset.querySelectorAll("[data-upload]").forEach(function (input) {
        if (input.closest("[hidden]") && fieldset === textParams) { return; }
        if (input.files && input.files[0]) { uploads.push(input); }
      });
    }
    if (subTypeSelect.value === "DATA_CLEANUP" && (parameters.table || parameters.condition)) {
      parameters.args = [parameters.table, parameters.condition].filter(function (v) { return v; });
      delete parameters.table;
      delete parameters.condition;
    }
    var targets = Array.prototype.map.call(form.querySelectorAll("input[name=targets]:checked"), function (i) { return i.value; });
    return Promise.all(uploads.map(function (input) {
      if (!hashes.has(input)) { hashFile(input); }
      return hashes.get(input).then(function (sha) { return { field: input.dataset.upload, file: input.files[0], sha256: sha }; });
    })).then(function (files) {
      return {
        system: systemSelect.value, sub_type: subTypeSelect.value, title: document.getElementById("f-title").value.trim(),
        raw_request: document.getElementById("f-raw_request").value, targets: targets, parameters: parameters,
        emergency: document.getElementById("f-emergency").checked, files: files,
      };
    });
  }

  function clearErrors() {
    form.querySelectorAll("[data-error-for]").forEach(function (node) { node.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (node) { node.removeAttribute("aria-invalid"); });
  }

  function showErrors(errors) {
    clearErrors();
    var first = null;
    Object.keys(errors || {}).forEach(function (name) {
      var message = Array.isArray(errors[name]) ? errors[name].join(" ") : String(errors[name]);
      var key = name.replace(/^parameters\./, "").split(".")[0];
      var scopeNode = activeTemplate();
      var node = (scopeNode && scopeNode.querySelector('[data-error-for="' + CSS.escape(key) + '"]')) ||
                 form.querySelector('#e-' + CSS.escape(key)) || document.getElementById("e-detail");
      node.textContent = (node.textContent ? node.textContent + " " : "") +
                         (node.id === "e-detail" && name !== "detail" ? name + ": " : "") + message;
      var describedField = form.querySelector('[aria-describedby~="' + node.id + '"]');
      if (describedField) { describedField.setAttribute("aria-invalid", "true"); }
      first = first || describedField || node;
    });
    if (first) {
      if (first.focus && first.matches && first.matches("input, select, textarea, fieldset")) { first.focus(); }
      first.scrollIntoView({ block: "center" });
    }
  }

  // A POST with the CSRF token, answered with { ok, status, body } (body: the JSON answer, or {}).
  function post(url, body, contentType) {
    var headers = { "X-CSRFToken": csrf, "Accept": "application/json" };
    if (contentType) { headers["Content-Type"] = contentType; }
    return fetch(url, { method: "POST", credentials: "same-origin", body: body, headers: headers }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, body: data };
      });
    });
  }

  function postJson(url, payload) {
    return post(url, JSON.stringify(payload), "application/json");
  }

  function showPreview(html) {
    // The fragment is the server's own rendering of the plan partial (escaped by Django).
    var doc = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
    preview.textContent = "";
    Array.prototype.forEach.call(doc.body.firstChild.childNodes, function (node) {
      preview.appendChild(document.importNode(node, true));
    });
    preview.hidden = false;
    submitButton.hidden = false;
    var title = document.getElementById("preview-title");
    if (title) { title.focus(); }
  }

  // Photo of an error screen: stored by the API, read by the worker (OCR is seconds, not for
  // the request path); the page polls for the text, puts it in the request field and reads it.
  var photoBox = document.getElementById("photo-ocr");
  function useText(text) {
    var field = document.getElementById("f-raw_request");
    field.value = (field.value.trim() ? field.value.trim() + " " : "") + text;
    var textMode = form.querySelector("input[name=mode][value=text]");
    if (textMode && !textMode.checked) { textMode.checked = true; syncVisibility(); }
    clarified = {};
    invalidate();
    previewButton.click();
  }
  if (photoBox) {
    var photoInput = document.getElementById("f-photo");
    var photoStatus = document.getElementById("photo-status");
    var pollPhoto = function (url, tries) {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } }).then(function (response) {
        return response.json();
      }).then(function (data) {
        if (data.status === "PENDING") {
          if (tries > 90) { photoStatus.textContent = ""; showErrors({ photo: photoBox.dataset.timeout }); return; }
          window.setTimeout(function () { pollPhoto(url, tries + 1); }, 1000);
          return;
        }
        photoStatus.textContent = "";
        if (data.status === "FAILED") { showErrors({ photo: data.error }); return; }
        useText(data.ocr.text);
      }).catch(function () { updateOnline(); });
    };
    photoInput.addEventListener("change", function (event) {
      event.stopPropagation();  // not a form field: nothing to invalidate or hash
      var file = photoInput.files && photoInput.files[0];
      if (!file) { return; }
      clearErrors();
      var body = new FormData();
      body.append("photo", file, file.name);
      photoStatus.textContent = photoBox.dataset.reading;
      post(photoBox.dataset.photoUrl, body).then(function (answer) {
        var data = answer.body;
        photoInput.value = "";
        if (!answer.ok) {
          photoStatus.textContent = "";
          showErrors({ photo: data.photo || data.media_data || data.body || data.detail || answer.status });
          return;
        }
        pollPhoto(data.url, 0);
      }).catch(function () { photoStatus.textContent = ""; updateOnline(); });
    });
  }

  // Voice memo (only when the server has speech-to-text): MediaRecorder in the browser, the
  // recording posted to /app/transcribe, the text put in the request field and read by the
  // parser like typed text.
  var voice = document.getElementById("voice-memo");
  if (voice) {
    var voiceButton = document.getElementById("voice-button");
    var voiceStatus = document.getElementById("voice-status");
    var recorder = null;
    var chunks = [];
    var voiceError = function (message) {
      showErrors({ audio: message });
      voiceStatus.textContent = "";
      voiceButton.setAttribute("aria-pressed", "false");
    };
    var sendRecording = function (blob) {
      if (blob.size > Number(voice.dataset.limitMb) * 1024 * 1024) { voiceError(voice.dataset.tooLarge); return; }
      var body = new FormData();
      body.append("audio", blob, "memo." + ((blob.type.split("/")[1] || "webm").split(";")[0]));
      voiceStatus.textContent = voice.dataset.working;
      post(voice.dataset.transcribeUrl, body).then(function (answer) {
        var data = answer.body;
        if (!answer.ok) { voiceError((data.errors || data).audio || (data.errors || data).detail || answer.status); return; }
        voiceStatus.textContent = "";
        useText(data.text);
      }).catch(function () { voiceError(voice.dataset.unsupported); });
    };
    voiceButton.addEventListener("click", function () {
      if (recorder && recorder.state === "recording") { recorder.stop(); return; }
      if (!(window.MediaRecorder && navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
        voiceError(voice.dataset.unsupported);
        return;
      }
      clearErrors();
      navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
        chunks = [];
        recorder = new MediaRecorder(stream);
        recorder.addEventListener("dataavailable", function (event) { if (event.data.size) { chunks.push(event.data); } });
        recorder.addEventListener("stop", function () {
          stream.getTracks().forEach(function (track) { track.stop(); });
          voiceButton.setAttribute("aria-pressed", "false");
          sendRecording(new Blob(chunks, { type: recorder.mimeType || "audio/webm" }));
        });
        recorder.start();
        voiceButton.setAttribute("aria-pressed", "true");
        voiceStatus.textContent = voice.dataset.recording;
      }).catch(function () { voiceError(voice.dataset.denied); });
    });
  }

  var lastField = null;
  form.addEventListener("focusin", function (event) {
    if (event.target.matches("textarea, input[type=text]")) { lastField = event.target; }
  });

  previewButton.addEventListener("click", function () {
    clearErrors();
    collect().then(function (data) {
      if (mode() === "text") {
        // The answers to a parameter question: what was typed, and each chosen file's SHA-256.
        var params = Object.assign({}, data.parameters);
        data.files.forEach(function (f) { params[f.field + "_sha256"] = f.sha256; });
        return postJson(form.dataset.parseUrl, Object.assign({ raw_request: data.raw_request, params: params }, clarified));
      }
      var files = {};
      data.files.forEach(function (f) { files[f.field] = { name: f.file.name, size: f.file.size, sha256: f.sha256 }; });
      return postJson(form.dataset.previewUrl, {
        system: data.system, sub_type: data.sub_type, title: data.title, targets: data.targets,
        parameters: data.parameters, emergency: data.emergency, raw_request: data.raw_request, files: files,
      });
    }).then(function (result) {
      if (!result.ok) { showErrors(result.body.errors || result.body); return; }
      showPreview(result.body.html || "");
      if (mode() === "text") { showAsked(); }
      // Free text with an open question: answer it first (the choices re-run the check).
      submitButton.hidden = mode() === "text" && !result.body.ready;
    }).catch(function () { updateOnline(); });
  });

  // A parameter question in the parse shows its inputs (a file, a version) below the text.
  function showAsked() {
    var asked = preview.querySelectorAll('.clarify[data-clarify-field="params"] [data-clarify]');
    Array.prototype.forEach.call(asked, function (choice) {
      var box = textParams.querySelector('[data-asked="' + CSS.escape(choice.value) + '"]');
      if (box) { box.hidden = false; choice.closest("label").hidden = true; }
    });
    syncVisibility();
  }

  function textDraftOf(data) {
    var fields = { raw_request: data.raw_request };
    Object.keys(clarified).forEach(function (key) { fields[key] = clarified[key]; });
    if (Object.keys(data.parameters).length) { fields.params = JSON.stringify(data.parameters); }
    var files = {};
    var shas = {};
    data.files.forEach(function (f) { files[f.field] = f.file; shas[f.field] = f.sha256; });
    return { title: data.raw_request.slice(0, 60), csrf: csrf, user: me, url: form.dataset.intakeUrl, files: files, hashes: shas,
             fields: fields };
  }

  function draftOf(data) {
    if (mode() === "text") { return textDraftOf(data); }
    var files = {};
    var shas = {};
    data.files.forEach(function (f) { files[f.field] = f.file; shas[f.field] = f.sha256; });
    return {
      title: data.title, csrf: csrf, user: me, files: files, hashes: shas,
      fields: { system: data.system, sub_type: data.sub_type, title: data.title, raw_request: data.raw_request,
                targets: data.targets, parameters: JSON.stringify(data.parameters), emergency: data.emergency ? "on" : "" },
    };
  }

  function queue(data) {
    return GuardiaDrafts.add(draftOf(data)).then(function () {
      if (registration && registration.sync) { registration.sync.register("guardia-drafts").catch(function () {}); }
      form.reset();
      syncVisibility();
      invalidate();
      return showQueue();
    });
  }

  submitButton.addEventListener("click", function () {
    submitButton.disabled = true;
    collect().then(function (data) {
      return GuardiaDrafts.post(submitUrl, draftOf(data), csrf).then(function (result) {
        if (result.ok && result.body.task_id) {
          window.location.assign(form.dataset.home + "#req-" + encodeURIComponent(result.body.task_id));
          return;
        }
        if (result.ok && result.body.clarification) {
          showErrors({ detail: result.body.clarification.question });
          return;
        }
        if (result.status === 0) { showErrors({ detail: form.dataset.loginNeeded }); return; }
        showErrors(result.body.errors || (result.body.detail ? { detail: result.body.detail } : result.body));
      }, function () {
        // The connection dropped between preview and filing: keep it for later.
        return queue(data);
      });
    }).then(function () { submitButton.disabled = false; });
  });

  queueButton.addEventListener("click", function () {
    collect().then(function (data) {
      var missing = {};
      if (mode() === "text") {
        if (!data.raw_request.trim()) { missing.raw_request = document.querySelector("label[for=f-raw_request]").textContent; }
        if (Object.keys(missing).length) { showErrors(missing); return; }
        return queue(data);
      }
      if (!data.system) { missing.system = systemSelect.options[0].textContent; }
      if (!data.sub_type) { missing.sub_type = subTypeSelect.options[0].textContent; }
      if (!data.title) { missing.title = document.querySelector("label[for=f-title]").textContent; }
      if (Object.keys(missing).length) { showErrors(missing); return; }
      return queue(data);
    });
  });

  // The keypad: each key inserts its character at the cursor of the field last typed in
  // (the request text when none was), and keeps the focus and cursor there.
  var keypad = form.querySelector(".keypad");
  keypad.addEventListener("pointerdown", function (event) {
    if (event.target.closest(".key")) { event.preventDefault(); }  // the field keeps its focus and caret
  });
  keypad.addEventListener("click", function (event) {
    var key = event.target.closest(".key");
    if (!key) { return; }
    var field = lastField || document.getElementById("f-raw_request");
    var start = field.selectionStart === null ? field.value.length : field.selectionStart;
    var end = field.selectionEnd === null ? start : field.selectionEnd;
    field.focus();
    field.setRangeText(key.dataset.key, start, end, "end");
    field.dispatchEvent(new Event("input", { bubbles: true }));
  });
})();
