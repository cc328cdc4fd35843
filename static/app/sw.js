/* GUARDiA field app service worker, served from /app/sw.js so its scope is /app/.

   - App shell offline: pages under /app/ are network-first with the last good copy as the
     fallback; the app's static files are cache-first (they are versioned with CACHE).
   - The offline draft queue (drafts.js, IndexedDB) is sent when the connection returns:
     by the page on its "online" event, and by this worker on a Background Sync event.
   - Notifications: the page asks the worker's registration to show them (only when the
     user granted permission); a click opens or focuses the app.
   Nothing here is fetched from another origin. */
"use strict";

importScripts("/static/app/drafts.js");

var CACHE = "guardia-app-v1";
var SHELL = [
  "/app/", "/app/new",
  "/static/css/guardia.css", "/static/app/app.css", "/static/app/app.js", "/static/app/drafts.js",
  "/static/js/live.js", "/static/js/a11y.js",
  "/static/app/icons/icon-192.png", "/static/app/icons/icon-512.png",
];

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(CACHE).then(function (cache) {
    // Each entry on its own: one missing page (no permission to file) must not fail the install.
    return Promise.all(SHELL.map(function (url) {
      return fetch(url, { credentials: "same-origin", redirect: "manual" }).then(function (response) {
        if (response.ok) { return cache.put(url, response); }
      }).catch(function () {});
    }));
  }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.filter(function (key) { return key.indexOf("guardia-app-") === 0 && key !== CACHE; })
      .map(function (key) { return caches.delete(key); }));
  }).then(function () { return self.clients.claim(); }));
});

function isShellPage(url) {
  return url.origin === self.location.origin && /^\/app\/(new)?$/.test(url.pathname);
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") { return; }  // filings go to the network; offline they are queued by the page
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) { return; }
  if (request.mode === "navigate" || isShellPage(url)) {
    event.respondWith(fetch(request).then(function (response) {
      // Only a real page is kept: not a redirect to the login page.
      if (response.ok && !response.redirected && isShellPage(url)) {
        var copy = response.clone();
        caches.open(CACHE).then(function (cache) { cache.put(url.pathname, copy); });
      }
      return response;
    }).catch(function () {
      return caches.match(url.pathname).then(function (hit) {
        return hit || caches.match("/app/") || Response.error();
      });
    }));
    return;
  }
  if (url.pathname.indexOf("/static/") === 0) {
    event.respondWith(caches.match(request).then(function (hit) {
      return hit || fetch(request).then(function (response) {
        if (response.ok && (url.pathname.indexOf("/static/app/") === 0 || SHELL.indexOf(url.pathname) >= 0)) {
          var copy = response.clone();
          caches.open(CACHE).then(function (cache) { cache.put(request, copy); });
        }
        return response;
      });
    }));
  }
});

function notify(title, body, tag) {
  if (self.Notification && self.Notification.permission !== "granted") { return Promise.resolve(); }
  return self.registration.showNotification(title, {
    body: body, tag: tag, lang: "ko", icon: "/static/app/icons/icon-192.png", data: { url: "/app/" },
  });
}

self.addEventListener("sync", function (event) {
  if (event.tag !== "guardia-drafts") { return; }
  var sent = [];
  event.waitUntil(self.GuardiaDrafts.flush("/app/submit", "", function (draft, result) {
    sent.push({ title: draft.title, ok: result.ok, status: result.status, body: result.body });
    var id = result.body && result.body.task_id;
    return notify("GUARDiA", id ? "대기 중이던 요청 " + id + "을(를) 접수했습니다." : "대기 중이던 요청이 거부되었습니다.",
                  "draft-" + draft.id);
  }).then(function () {
    // Open pages tell the user what was filed, in their own words (templates/app/base.html).
    return self.clients.matchAll().then(function (clients) {
      clients.forEach(function (client) { client.postMessage({ type: "drafts-sent", items: sent }); });
    });
  }));
});

self.addEventListener("message", function (event) {
  var data = event.data || {};
  if (data.type === "notify") {
    event.waitUntil(notify(String(data.title || "GUARDiA"), String(data.body || ""), String(data.tag || "")));
  }
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  event.waitUntil(self.clients.matchAll({ type: "window" }).then(function (clients) {
    for (var i = 0; i < clients.length; i++) {
      if (new URL(clients[i].url).pathname.indexOf("/app/") === 0) { return clients[i].focus(); }
    }
    return self.clients.openWindow("/app/");
  }));
});
