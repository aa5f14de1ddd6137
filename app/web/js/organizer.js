// The organizer's corner of the events page (role organizer or admin): their events with
// the live counts, the attendee CSV, and a check-in box for a ticket code or QR payload.

import { api, clock, sentence } from "./api.js";

const STAFF = ["organizer", "admin"];
const REFRESH_MS = 10_000; // how often the counts (GET /events/{id}/status) are read again

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function counts({ available, held, booked }) {
  return `${available} free · ${held} held · ${booked} sold`;
}

export class Organizer {
  constructor(host) {
    this.host = host;
    this.list = host.querySelector("#my-events");
    this.result = host.querySelector("#checkin-result");
    this.message = host.querySelector("#organizer-message");
    this.events = [];
    this.shown = 0; // which show() the count refreshes belong to
    host.querySelector("#checkin-form").addEventListener("submit", (e) => this.#checkIn(e));
  }

  /** Show the view for `user` (from /auth/me), or hide it for a customer or nobody. */
  async show(user) {
    this.hide();
    if (!STAFF.includes(user?.role)) return;
    this.host.hidden = false;
    const shown = this.shown;
    const events = await api("/admin/events?limit=100").then((page) => page.items, (error) => error);
    if (shown !== this.shown) return; // a later show() or hide() took over
    if (!Array.isArray(events)) return this.list.replaceChildren(el("li", { textContent: sentence(events) }));
    this.events = events;
    this.list.replaceChildren(...this.events.map((e) => this.#row(e)));
    if (!this.events.length) this.list.append(el("li", { textContent: "You have no events yet." }));
    await this.#counts(shown);
  }

  hide() {
    this.shown += 1;
    clearTimeout(this.timer);
    this.host.hidden = true;
  }

  #row(event) {
    const li = el("li", {}, el("strong", { textContent: event.name }), ` · ${event.status}`);
    li.dataset.eventId = event.id;
    const live = el("span", { className: "counts" });
    const actions = el("div", { className: "actions" });
    if (event.status === "published") {
      li.append(" · ", live);
      actions.append(el("a", { href: `#/events/${event.id}`, textContent: "Open live seat map" }));
    }
    const csv = el("button", { type: "button", className: "secondary", textContent: "Download attendees (CSV)" });
    csv.setAttribute("aria-label", `Download attendees (CSV) of ${event.name}`);
    csv.addEventListener("click", () => this.#download(event, csv));
    actions.append(csv);
    li.append(actions);
    return li;
  }

  async #counts(shown) {
    for (const event of this.events.filter((e) => e.status === "published")) {
      const text = await api(`/events/${event.id}/status`).then(counts, sentence);
      if (shown !== this.shown) return; // hidden (or shown again) meanwhile
      this.list.querySelector(`li[data-event-id="${event.id}"] .counts`).textContent = text;
    }
    this.timer = setTimeout(() => this.#counts(shown), REFRESH_MS);
  }

  // The token is not a cookie, so a plain link cannot carry it: fetch, then save a blob.
  async #download(event, button) {
    button.disabled = true;
    this.message.textContent = "";
    try {
      const blob = await api(`/admin/events/${event.id}/attendees.csv`, { blob: true });
      const url = URL.createObjectURL(blob);
      el("a", { href: url, download: `event-${event.id}-attendees.csv` }).click();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (error) {
      this.message.textContent = sentence(error);
    }
    button.disabled = false;
  }

  async #checkIn(submit) {
    submit.preventDefault();
    const input = submit.target.elements.scanned;
    const scanned = input.value.trim();
    // A printed code is 12 letters and digits; a QR payload is "EVT2.<claim>.<signature>".
    const body = scanned.includes(".") ? { qr_code_data: scanned } : { code: scanned };
    try {
      const admitted = await api("/admin/checkin", { method: "POST", json: body });
      this.#say(`Admitted: seat ${admitted.seat_label}, holder ${admitted.holder}, ticket ${admitted.code}, at ${clock(admitted.checked_in_at)}.`, true);
      input.value = "";
    } catch (error) {
      // The API's own sentences name the problem: already in (and when), not valid, unknown.
      this.#say([400, 403, 404, 409].includes(error.status) ? error.message : sentence(error), false);
      input.select();
    }
  }

  #say(text, ok) {
    this.result.textContent = text;
    this.result.classList.toggle("ok", ok);
  }
}
