// Comfy Relay's service worker: the app opens at once on a poor connection, and with the relay
// out of reach shows what it last showed.
//
// - Hashed assets (name-0123456789abcdef.ext) never change: from the cache, else fetched and
//   kept. Those the current page no longer names are dropped.
// - The app's pages: from the network; after NETWORK_WAIT, or when it fails, the page last
//   fetched. Pairing, device links and /tls always go to the relay.
// - The relay's own GET API (workflows, kept jobs, node schemas, the session): from the
//   network, the device's last answer kept; the kept answer only when the relay cannot be
//   reached or has not answered within NETWORK_WAIT. Pictures, ComfyUI's routes, sockets and
//   every change pass by untouched.
// - Online, the app asks for the kept jobs older than the live ones its socket gives it; with
//   the relay out of reach it has no socket and asks for the newest. So the newest page is
//   kept too, fetched beside a page asked "before" (at most every FIRST_PAGE_EVERY).
const CACHE = "comfy-relay-shell";
const NETWORK_WAIT = 3000;
const FIRST_PAGE_EVERY = 30000;
let firstPageAt = 0;
const HASHED = /^\/[\w-]+-[0-9a-f]{16}(_bg)?\.\w+$/;
const NAMED = /\/[\w-]+-[0-9a-f]{16}(_bg)?\.\w+/g;

// The page that registered the worker loaded before it: keep that page and what it names.
self.addEventListener("install", (event) => {
  self.skipWaiting();
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      const response = await fetch("/");
      if (!response.ok) return;
      await cache.put("/", response.clone());
      await cache.addAll([...new Set((await response.text()).match(NAMED) || [])]);
    })(),
  );
});
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== location.origin) return;
  if (HASHED.test(url.pathname)) {
    event.respondWith(asset(request));
  } else if (request.mode === "navigate" && !/^\/(pair|link\/|tls)/.test(url.pathname)) {
    event.respondWith(page(request));
  } else if (url.pathname.startsWith("/api/") && url.pathname !== "/api/events") {
    event.respondWith(api(request));
  }
});

async function asset(request) {
  const cache = await caches.open(CACHE);
  const kept = await cache.match(request);
  if (kept) return kept;
  const response = await fetch(request);
  if (response.ok) await cache.put(request, response.clone());
  return response;
}

async function page(request) {
  return networkOrKept(request, "/", async (cache, response) => {
    if (!response.headers.get("content-type")?.startsWith("text/html")) return;
    await cache.put("/", response.clone());
    await dropUnnamed(cache, await response.clone().text());
  });
}

function api(request) {
  return networkOrKept(request, request, async (cache, response) => {
    await cache.put(request, response.clone());
    keepNewestJobs(cache, new URL(request.url));
  });
}

// The network's answer (kept by `keep` when good); the answer kept under `key` when the
// network fails or has not answered within NETWORK_WAIT (a relay out of reach may never
// refuse); the network's failure when nothing is kept.
async function networkOrKept(request, key, keep) {
  const cache = await caches.open(CACHE);
  const fetched = fetch(request).then(async (response) => {
    if (response.ok) await keep(cache, response);
    return response;
  });
  const waited = new Promise((resolve) => setTimeout(resolve, NETWORK_WAIT));
  const first = await Promise.race([fetched.catch(() => null), waited]);
  if (first) return first;
  return (await cache.match(key)) || fetched;
}

function keepNewestJobs(cache, url) {
  const first = url.search.replace(/^\?before=[^&]*&?/, "?");
  if (url.pathname !== "/api/jobs/history" || first === url.search) return;
  if (Date.now() - firstPageAt < FIRST_PAGE_EVERY) return;
  firstPageAt = Date.now();
  url.search = first;
  fetch(url)
    .then((response) => response.ok && cache.put(url, response))
    .catch(() => {});
}

async function dropUnnamed(cache, html) {
  for (const request of await cache.keys()) {
    const path = new URL(request.url).pathname;
    if (HASHED.test(path) && !html.includes(path)) await cache.delete(request);
  }
}

// A job ended (the relay's push): one notification per job, as the open page shows it too.
self.addEventListener("push", (event) => {
  const message = event.data && event.data.json();
  if (!message) return;
  event.waitUntil(
    self.registration.showNotification(message.title, {
      body: message.body,
      tag: message.job,
      icon: "/icons/icon-192.png",
      image: message.image,
      data: { url: message.url },
    }),
  );
});

// A tap opens the app's jobs: in a window already open, else a new one.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || "/", location.origin).href;
  event.waitUntil(
    (async () => {
      const [open] = await clients.matchAll({ type: "window" });
      if (!open) return clients.openWindow(url);
      await open.focus();
      return open.navigate(url);
    })(),
  );
});
