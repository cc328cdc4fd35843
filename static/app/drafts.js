/* The offline draft queue: requests composed without a connection, kept in IndexedDB
   (files included, as Blobs) until they can be filed. Shared by the page (app.js) and the
   service worker (sw.js, through importScripts), so either can send the queue.

   A draft: {id, created, title, fields: {name: value | [values]}, files: {field: File},
   hashes: {field: sha256}, csrf, user, url?} (url: a free-text draft goes to the intake API).
   A draft is only ever sent for the user who wrote it: on a shared phone the next person's
   session must not file someone else's draft. Sending posts the same multipart body the online form
   posts to /app/submit; a draft the server refuses (4xx) leaves the queue with its error,
   a network failure keeps it for the next try. Only one sender runs at a time (Web Locks
   where available), so two tabs and the worker never file the same draft twice. */
(function (scope) {
  "use strict";

  var DB = "guardia-pwa";
  var STORE = "drafts";

  function open() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open(DB, 1);
      request.onupgradeneeded = function () {
        request.result.createObjectStore(STORE, { keyPath: "id" });
      };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }

  function run(mode, work) {
    return open().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction(STORE, mode);
        var result;
        Promise.resolve(work(tx.objectStore(STORE))).then(function (value) { result = value; });
        tx.oncomplete = function () { db.close(); resolve(result); };
        tx.onerror = function () { db.close(); reject(tx.error); };
      });
    });
  }

  function request(req) {
    return new Promise(function (resolve, reject) {
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { reject(req.error); };
    });
  }

  function add(draft) {
    draft.id = draft.id || (Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10));
    draft.created = draft.created || new Date().toISOString();
    return run("readwrite", function (store) { return request(store.put(draft)); }).then(function () { return draft; });
  }

  function list(user) {
    return run("readonly", function (store) { return request(store.getAll()); }).then(function (items) {
      return (items || []).filter(function (draft) { return !user || draft.user === user; })
        .sort(function (a, b) { return a.created < b.created ? -1 : 1; });
    });
  }

  function remove(id) {
    return run("readwrite", function (store) { return request(store.delete(id)); });
  }

  function body(draft) {
    var form = new FormData();
    Object.keys(draft.fields || {}).forEach(function (name) {
      var value = draft.fields[name];
      (Array.isArray(value) ? value : [value]).forEach(function (item) { form.append(name, item); });
    });
    Object.keys(draft.files || {}).forEach(function (name) {
      var file = draft.files[name];
      form.append(name, file, file.name || name);
      form.append(name + "_sha256", (draft.hashes || {})[name] || "");
    });
    return form;
  }

  /* POST one draft; resolves {ok, status, body}. Rejects only on a network failure. */
  function post(url, draft, csrf) {
    return fetch(draft.url || url, {
      // A redirect is the login page (the session ended): never followed, so it is not
      // mistaken for an answer.
      method: "POST", body: body(draft), credentials: "same-origin", redirect: "manual",
      headers: { "X-CSRFToken": csrf || draft.csrf || "", "Accept": "application/json" },
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, body: data };
      });
    });
  }

  function exclusive(work) {
    if (scope.navigator && scope.navigator.locks) {
      return scope.navigator.locks.request("guardia-drafts", work);
    }
    return work();
  }

  /* Send the user's queued drafts in order; report(draft, result) after each one the server
     answered. Without a user (the worker, which cannot tell who is logged in) each draft
     carries its own CSRF token, which Django rotates at every login, so another person's
     session refuses it and the draft stays. */
  function flush(url, csrf, report, user) {
    return exclusive(function () {
      return list(user).then(function (drafts) {
        var chain = Promise.resolve();
        drafts.forEach(function (draft) {
          chain = chain.then(function () {
            return post(url, draft, user ? csrf : "").then(function (result) {
              // 401/403 after a logout or an expired session: kept until the user logs in again.
              if (result.status === 0 || result.status === 401 || (result.status === 403 && !result.body.errors)) {
                return;
              }
              if (result.status >= 500) { return; }
              return remove(draft.id).then(function () { if (report) { report(draft, result); } });
            });
          });
        });
        return chain;
      });
    });
  }

  scope.GuardiaDrafts = { add: add, list: list, remove: remove, post: post, flush: flush };
})(typeof self !== "undefined" ? self : window);
