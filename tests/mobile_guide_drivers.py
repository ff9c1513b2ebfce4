"""Drivers of tests/integration/test_mobile_guide.py: JavaScript that calls each guide block.

``DRIVERS[title]`` is the body of an async function run after all of the guide's JavaScript
blocks (so it can call their functions); it returns a JSON-able result. ``env`` holds what the
Python test passes in. ``DRIVER_HELPERS`` is test scaffolding (not part of the guide): a
polling helper, an in-memory secure store and a stand-in for the system browser.
"""

from __future__ import annotations

# Test scaffolding shared by the drivers (not part of the guide).
DRIVER_HELPERS = r"""
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(check, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error("timed out waiting");
    await pause(100);
  }
}
function memoryStore() {
  const items = new Map();
  return {
    items,
    setItemAsync: async (k, v) => void items.set(k, v),
    getItemAsync: async (k) => items.get(k) ?? null,
    deleteItemAsync: async (k) => void items.delete(k),
  };
}
const decodeHtml = (s) =>
  s
    .replace(/&quot;/g, '"')
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
// A system browser for openAuthSession: follows redirects, keeps cookies per host, and fills
// in the Cognito emulator's hosted-UI sign-in form.
async function fakeAuthSession(url, redirectUrl) {
  const jar = new Map();
  let current = url;
  let init = {};
  for (let hop = 0; hop < 15; hop++) {
    if (current.startsWith(redirectUrl)) return { type: "success", url: current };
    const host = new URL(current).host;
    const cookies = [...(jar.get(host) ?? new Map())].map(([k, v]) => `${k}=${v}`).join("; ");
    const res = await fetch(current, {
      redirect: "manual",
      ...init,
      headers: { ...(init.headers ?? {}), ...(cookies ? { Cookie: cookies } : {}) },
    });
    for (const header of res.headers.getSetCookie()) {
      const [pair] = header.split(";");
      const at = pair.indexOf("=");
      if (!jar.has(host)) jar.set(host, new Map());
      jar.get(host).set(pair.slice(0, at).trim(), pair.slice(at + 1));
    }
    init = {};
    if (res.status >= 300 && res.status < 400) {
      current = new URL(res.headers.get("location"), current).href;
      continue;
    }
    const html = await res.text();
    const form = html.match(/<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i);
    if (res.status !== 200 || !form) {
      return { type: "dismiss", status: res.status, page: html.slice(0, 300) };
    }
    const fields = new URLSearchParams();
    for (const [input] of form[2].matchAll(/<input[^>]*>/gi)) {
      const name = input.match(/name="([^"]*)"/);
      const value = input.match(/value="([^"]*)"/);
      if (name) fields.set(decodeHtml(name[1]), value ? decodeHtml(value[1]) : "");
    }
    fields.set("username", env.email);
    fields.set("password", env.password);
    current = new URL(decodeHtml(form[1]), current).href;
    const form_type = { "Content-Type": "application/x-www-form-urlencoded" };
    init = { method: "POST", body: fields, headers: form_type };
  }
  return { type: "dismiss" };
}
"""

DRIVERS: dict[str, str] = {
    "client-setup": r"""
const client = createPhenomClient(env.session);
await startPhenomClient(client);
const rooms = client.getRooms().map((r) => r.roomId);
client.stopClient();
const stale = createPhenomClient({ ...env.session, accessToken: "syt_not_a_token" });
let rejected = null;
try { await startPhenomClient(stale); } catch (err) { rejected = err.errcode ?? String(err); }
stale.stopClient();
return { rooms, rejected };
""",
    "sso-login": r"""
const session = await signInWithSso(env.homeserverUrl, fakeAuthSession, "Phenom test");
const refused = await signInWithSso(env.homeserverUrl, async () => ({ type: "cancel" }), "x");
return { session, refused };
""",
    "session-storage": r"""
const store = memoryStore();
const before = await loadSession(store);
await saveSession(store, env.session);
return { before, after: await loadSession(store), keys: [...store.items.keys()] };
""",
    "room-list": r"""
const client = createPhenomClient(env.session);
await startPhenomClient(client);
const room = await until(() => {
  const r = client.getRoom(env.roomId);
  return r && r.getLiveTimeline().getEvents().some((e) => e.getId() === env.followUpId) && r;
});
const events = room.getLiveTimeline().getEvents();
const result = {
  sdkLast: events[events.length - 1].getType(),
  shown: lastShownMessage(room)?.getId() ?? null,
  hidden: events.filter((e) => !isShownInTimeline(e)).map((e) => e.getType()),
  list: roomList(client).map((entry) => entry.room.roomId),
};
client.stopClient();
return result;
""",
    "link-cards": r"""
PHENOM_ORIGINS.add(env.siteOrigin); // the test's copy of the Phenom site
const client = createPhenomClient(env.session);
await startPhenomClient(client);
const room = await until(() => {
  const r = client.getRoom(env.roomId);
  const ids = new Set(r?.getLiveTimeline().getEvents().map((e) => e.getId()) ?? []);
  return env.waitFor.every((id) => ids.has(id)) && r;
});
const byId = (id) => room.getLiveTimeline().getEvents().find((e) => e.getId() === id);
const edited = byId(env.edited);
await until(() => edited.replacingEvent()); // the SDK has applied the edit
const result = {};
for (const [name, id] of Object.entries(env.messages)) result[name] = cardsFor(room, byId(id));
client.stopClient();
return result;
""",
    "composer-preview": r"""
const client = createPhenomClient(env.session);
return {
  phenom: await composerCard(client, env.phenomUrl),
  other: await composerCard(client, "https://example.org/not-phenom"),
};
""",
    "send-with-card": r"""
const client = createPhenomClient(env.session);
const { preview } = await composerCard(client, env.phenomUrl);
const body = `Tonight: ${env.phenomUrl}`;
return {
  signed: await sendWithCard(client, env.roomId, body, preview),
  changed: await sendWithCard(client, env.roomId, body, { ...preview, "og:title": "Free tickets" }),
  invented: await sendWithCard(client, env.roomId, body, {
    matched_url: env.phenomUrl,
    "og:title": "Made up",
  }),
};
""",
    "media": r"""
const client = createPhenomClient(env.session);
const bytes = Uint8Array.from(Buffer.from(env.pngBase64, "base64"));
const mxc = await uploadImage(client, bytes, "image/png", "logo.png");
const full = await downloadMedia(client, mxc);
const thumb = await downloadMedia(client, mxc, { width: 32, height: 32 });
const plainUrl = client.mxcUrlToHttp(mxc); // the SDK's default
const plain = await fetch(plainUrl, { headers: mediaHeaders(client) });
return {
  mxc,
  same: Buffer.from(full).equals(Buffer.from(bytes)),
  thumbBytes: thumb.length,
  authUrl: mediaUrl(client, mxc),
  plainUrl,
  plainStatus: plain.status,
};
""",
    "refusals": r"""
const client = createPhenomClient(env.session);
return {
  refused: await sendText(client, env.roomId, "Watch the trailer on https://youtube.com/watch?v=x"),
  accepted: await sendText(client, env.roomId, "hello from the guide"),
};
""",
    "offline-queue": r"""
const paced = createPhenomClient(env.session);
const queue = Array.from({ length: env.count }, (_, i) => ({
  roomId: env.roomId,
  content: { msgtype: "m.text", body: `queued while offline ${i + 1}` },
}));
const started = Date.now();
const flushed = await flushOfflineQueue(paced, queue);
const seconds = (Date.now() - started) / 1000;
// Control: the same queue from another user, all at once.
const burst = createPhenomClient(env.burstSession);
const results = await Promise.all(
  Array.from({ length: env.count }, (_, i) => sendText(burst, env.roomId, `burst ${i + 1}`)),
);
return {
  sent: flushed.sent.length,
  refusal: flushed.refusal,
  seconds,
  burstRefusals: results.filter((r) => r.refusal).map((r) => r.refusal),
};
""",
    "removals": r"""
const client = createPhenomClient(env.session);
await startPhenomClient(client);
const removals = [];
const stop = onRemovedFromRoom(client, (removal) => removals.push(removal));
const res = await fetch(`${env.session.homeserverUrl}/_synapse/client/phenom/v1/groups`, {
  method: "POST",
  headers: { Authorization: `Bearer ${env.adminToken}`, "Content-Type": "application/json" },
  body: JSON.stringify({ user_id: env.session.userId, groups: [], source: "guide-test" }),
});
if (!res.ok) throw new Error(`groups: ${res.status} ${await res.text()}`);
await until(() => removals.length >= 2);
stop();
client.stopClient();
return removals;
""",
    "push": r"""
const client = createPhenomClient(env.session);
const push = { platform: "ios", deviceToken: "a1b2c3d4e5f6", deviceName: "Test iPhone" };
await registerPush(client, { ...push, gatewayUrl: env.gatewayUrl });
const registered = (await client.getPushers()).pushers;
await unregisterPush(client, push);
return { registered, after: (await client.getPushers()).pushers };
""",
    "sign-out": r"""
const client = createPhenomClient(env.session);
const store = memoryStore();
await saveSession(store, env.session);
const push = { platform: "android", deviceToken: "fcm-token-1", deviceName: "Test Pixel" };
await registerPush(client, { ...push, gatewayUrl: env.gatewayUrl });
await signOut(client, store, push);
const whoami = await fetch(`${env.session.homeserverUrl}/_matrix/client/v3/account/whoami`, {
  headers: { Authorization: `Bearer ${env.session.accessToken}` },
});
return { whoami: whoami.status, stored: [...store.items.keys()] };
""",
}
