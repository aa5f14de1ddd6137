// The page: log in, the events, one event's live seat map, hold, pay, tickets; for an
// organizer, their events and a check-in box (organizer.js).

import { api, clock, euros, sentence, session } from "./api.js";
import { Bookings } from "./bookings.js";
import { LiveFeed } from "./live.js";
import { Organizer } from "./organizer.js";
import { COLORS, LEGEND, SeatMap, TAKEN } from "./seatmap.js";

const $ = (id) => document.getElementById(id);
const STATES = {
  connecting: "Connecting to live updates…",
  live: "Live: seats change here as people book them.",
  reconnecting: "Reconnecting… seat states may be out of date until the map is back.",
  resyncing: "Catching up with changes…",
  gone: "This event is no longer on sale.",
};
// Measured from the Playwright tests (tests/test_web.py) and docs/PERFORMANCE.md.
const perf = (window.eventlyPerf = { dataMs: null, drawMs: null, firstPaintMs: null, live: [] });

const page = { event: null, feed: null, map: null, queue: null, admission: null, user: null };
const bookings = new Bookings($("bookings"), { say, changed: refreshMine });
const organizer = new Organizer($("organizer"));

function say(text, ok = false) {
  $("message").textContent = text;
  $("message").classList.toggle("ok", ok);
}

// --- account -------------------------------------------------------------------------

async function showAccount() {
  const loggedIn = Boolean(session.token);
  $("login-form").hidden = loggedIn;
  $("who").hidden = !loggedIn;
  page.user = null;
  if (loggedIn) {
    try {
      page.user = await api("/auth/me");
      $("who-email").textContent = page.user.email;
    } catch (error) {
      session.token = null;
      $("account-message").textContent = sentence(error);
      return showAccount();
    }
  }
  updateButtons();
  if (!$("events-view").hidden) organizer.show(page.user);
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const email = data.get("email"), password = data.get("password");
  try {
    if (event.submitter?.value === "register") {
      await api("/auth/register", { method: "POST", json: { email, password } });
    }
    const token = await api("/auth/login", { method: "POST", form: { username: email, password } });
    session.token = token.access_token;
    $("account-message").textContent = "";
    event.target.reset();
  } catch (error) {
    $("account-message").textContent = error.status === 409
      ? "That e-mail already has an account: log in instead."
      : sentence(error);
  }
  await showAccount();
  if (page.event) await refreshMine();
});

$("logout").addEventListener("click", async () => {
  session.token = null;
  page.admission = null;
  bookings.clear();
  page.map?.setMine([]);
  await showAccount();
});

// --- the events list -----------------------------------------------------------------

async function showEvents() {
  $("events-view").hidden = false;
  $("event-view").hidden = true;
  organizer.show(page.user);
  const list = $("events");
  try {
    const { items } = await api("/events/?limit=100");
    list.replaceChildren(...items.map((e) => {
      const li = document.createElement("li");
      const link = Object.assign(document.createElement("a"), { href: `#/events/${e.id}`, textContent: e.name });
      const when = new Date(e.starts_at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
      const kind = e.seating === "seated" ? `${e.total_capacity} seats` : `${e.total_capacity} places, general admission`;
      li.append(link, ` · ${when} · ${e.venue} · ${kind}`);
      return li;
    }));
    if (!items.length) list.textContent = "No events on sale.";
  } catch (error) {
    list.textContent = sentence(error);
  }
}

// --- one event -----------------------------------------------------------------------

async function showEvent(id) {
  $("events-view").hidden = true;
  $("event-view").hidden = false;
  organizer.hide();
  say("");
  let event;
  try {
    event = await api(`/events/${id}`);
  } catch (error) {
    $("event-name").textContent = sentence(error);
    return;
  }
  page.event = event;
  page.admission = null;
  $("event-name").textContent = event.name;
  const when = new Date(event.starts_at).toLocaleString([], { dateStyle: "full", timeStyle: "short" });
  $("event-meta").textContent = `${when} · ${event.venue}`;
  const seated = event.seating === "seated";
  $("map").hidden = !seated;
  $("ga").hidden = seated;
  $("legend").hidden = !seated;
  $("hold").hidden = !seated;
  page.map = seated ? new SeatMap($("map"), { onToggle: selectionChanged, onHover: (t) => ($("hover").textContent = t) }) : null;
  page.map?.host.querySelector(".seat-layer").replaceChildren();
  showQueue();
  page.feed = new LiveFeed(id, { onSnapshot: snapshot, onChange: change, onEvent: eventChanged, onState: liveState });
  page.feed.connect();
  await refreshMine();
}

function snapshot(message) {
  counts(message);
  if (!page.map) return;
  const first = !page.map.seats;
  if (first) perf.dataMs = performance.mark("evently:map-data").startTime; // snapshot in
  const start = performance.now();
  first ? page.map.load(message.seats) : page.map.replace(message.seats);
  page.map.setMine(bookings.seatIds());
  if (!first) return;
  perf.drawMs = performance.now() - start;
  fillSections();
  requestAnimationFrame(() => requestAnimationFrame(() => {
    performance.mark("evently:map-painted");
    perf.firstPaintMs = performance.now(); // since navigation start
    document.body.dataset.mapReady = "true";
  }));
}

function change(message) {
  const start = performance.now();
  counts(message);
  page.map?.apply(message.seat_ids, message.status);
  const applied = performance.now();
  requestAnimationFrame(() => {
    perf.live.push({ seq: message.seq, applyMs: applied - start, frameMs: performance.now() - start });
    document.body.dataset.liveSeq = message.seq;
  });
  if (page.map && [...page.map.taken].length) selectionChanged({});
}

function eventChanged(message) {
  if (message.status === "cancelled") say("The organizer cancelled this event.");
}

function liveState(state) {
  $("live-state").dataset.state = state;
  $("live-state").textContent = STATES[state];
}

function counts({ available, held, booked }) {
  $("counts").textContent = `${available} free · ${held} held · ${booked} sold`;
  $("ga").textContent = `${available} of ${available + held + booked} places left.`;
}

function fillSections() {
  const select = document.querySelector("#any-form select");
  const options = [["", "any section"], ...page.map.sections().map((s) => [s.name, `${s.name} (${s.prices.map(euros).join("/")})`])];
  select.replaceChildren(...options.map(([value, text]) => new Option(text, value)));
}

function selectionChanged({ refused }) {
  if (refused) say(`${refused} is not free.`);
  const ids = page.map.selectedIds();
  const names = ids.map((id) => page.map.nameOf(id));
  $("selection-text").textContent = ids.length
    ? `${ids.length} seat${ids.length === 1 ? "" : "s"}: ${names.join(", ")} · ${euros(page.map.selectedTotal())}`
    : "Pick seats on the map (click, or Tab to the map and use the arrow keys and Enter).";
  updateButtons();
}

function updateButtons() {
  const loggedIn = Boolean(session.token);
  const mustQueue = page.event?.queue?.enabled && !page.admission;
  $("hold").disabled = !loggedIn || mustQueue || !page.map?.selected.size;
  document.querySelector("#any-form button").disabled = !loggedIn || mustQueue;
  $("hold").title = loggedIn ? "" : "Log in to hold seats";
}

async function refreshMine() {
  if (!session.token || !page.event) return;
  try {
    await bookings.refresh(page.event.id);
    page.map?.setMine(bookings.seatIds());
  } catch (error) {
    say(sentence(error));
  }
}

async function hold(body) {
  const headers = { "Idempotency-Key": crypto.randomUUID?.() ?? `${Date.now()}-${Math.random()}` };
  if (page.admission) headers["Admission-Token"] = page.admission.token;
  try {
    const booking = await api("/bookings/", { method: "POST", json: { event_id: page.event.id, ...body }, headers });
    say(`Held ${booking.seats.length} seat${booking.seats.length === 1 ? "" : "s"} until ${clock(booking.expires_at)}: pay below.`, true);
    page.map?.clearSelection();
    page.map?.setMine([...bookings.seatIds(), ...booking.seats.map((s) => s.id)]);
    selectionChanged({});
  } catch (error) {
    if (error.code === "seats_unavailable") page.map?.markTaken(error.body.seat_ids ?? []);
    if (error.code.startsWith("admission")) page.admission = null;
    say(sentence(error, (id) => page.map?.nameOf(id) ?? `seat ${id}`));
    if (page.map) selectionChanged({});
  }
  await refreshMine();
}

$("hold").addEventListener("click", () => hold({ seat_ids: page.map.selectedIds() }));
$("any-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const section = data.get("section");
  hold({ quantity: Number(data.get("quantity")), ...(section ? { section } : {}) });
});

// --- the waiting room ----------------------------------------------------------------

function showQueue() {
  clearTimeout(page.queue?.timer);
  page.queue = null;
  const queued = Boolean(page.event.queue?.enabled);
  $("queue").hidden = !queued;
  $("queue-join").hidden = false;
  $("queue-text").textContent = "This sale has a waiting room: join the line, and hold your seats once you are let in.";
  updateButtons();
}

async function queueStep(request) {
  try {
    const status = await request();
    page.queue = { token: status.queue_token ?? page.queue?.token };
    if (status.state === "admitted" || status.state === "off") {
      page.admission = status.state === "admitted" ? { token: status.admission_token } : null;
      if (status.state === "off") page.event.queue.enabled = false;
      $("queue-join").hidden = true;
      $("queue-text").textContent = status.state === "admitted"
        ? `You're in! Hold your seats before ${clock(status.admission_expires_at)}.`
        : "The waiting room is closed: book directly.";
      updateButtons();
      return;
    }
    const where = status.position ? `You are number ${status.position} in line` : "You are in line (the order is drawn when the sale opens)";
    const wait = status.estimated_wait_s != null ? `, about ${status.estimated_wait_s} s to go` : "";
    $("queue-text").textContent = `${where}${wait}. Keep this page open.`;
    $("queue-join").hidden = true;
    const after = Math.min(10, Math.max(1, status.poll_after_s ?? 2));
    page.queue.timer = setTimeout(() => queueStep(poll), after * 1000);
  } catch (error) {
    $("queue-text").textContent = sentence(error);
    $("queue-join").hidden = false;
  }
}

function poll() {
  return api(`/events/${page.event.id}/queue/me`, { headers: { "Queue-Token": page.queue.token } });
}

$("queue-join").addEventListener("click", () => {
  if (!session.token) return say("Please log in first.");
  queueStep(() => api(`/events/${page.event.id}/queue`, { method: "POST" }));
});

// --- start ---------------------------------------------------------------------------

function legend() {
  $("legend").replaceChildren(...LEGEND.map(([key, text]) => {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = key === "taken" ? "swatch ring" : "swatch";
    if (key !== "taken") swatch.style.background = COLORS[key];
    else swatch.style.boxShadow = `inset 0 0 0 2px ${TAKEN}`;
    li.append(swatch, text);
    return li;
  }));
}

function route() {
  page.feed?.close();
  clearTimeout(page.queue?.timer);
  page.event = null;
  const match = location.hash.match(/^#\/events\/(\d+)/);
  return match ? showEvent(Number(match[1])) : showEvents();
}

window.addEventListener("hashchange", route);
legend();
showAccount();
route();
