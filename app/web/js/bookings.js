// The caller's bookings for one event: a hold with its countdown, renew, pay (or fail
// to), cancel; a confirmed booking with its tickets' QR codes (SVG drawn by the server,
// fetched with the token and shown from a blob: URL, so no other site can load them).

import { api, clock, euros, sentence } from "./api.js";

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

export class Bookings {
  constructor(host, { say, changed }) {
    this.host = host;
    this.say = say; // (text, ok?) -> shown in the panel's alert
    this.changed = changed; // () -> the page refreshes what depends on my bookings
    this.items = [];
    this.urls = [];
    setInterval(() => this.#tick(), 1000);
  }

  /** Reload my bookings of `eventId` (pending and confirmed, newest first). */
  async refresh(eventId) {
    const page = await api("/bookings/my-bookings?limit=100");
    this.items = page.items.filter((b) => b.event_id === eventId && ["pending", "confirmed"].includes(b.status));
    await this.render();
    return this.items;
  }

  seatIds() {
    return this.items.flatMap((b) => b.seats.map((s) => s.id));
  }

  clear() {
    this.items = [];
    this.host.replaceChildren();
  }

  async render() {
    this.urls.forEach((url) => URL.revokeObjectURL(url));
    this.urls = [];
    const cards = await Promise.all(this.items.map((b) => this.#card(b)));
    this.host.replaceChildren(...cards);
    if (!this.items.length) this.host.append(el("p", { className: "meta", textContent: "None yet." }));
    this.#tick();
  }

  async #card(booking) {
    const card = el("article", { className: "booking" });
    card.dataset.bookingId = booking.id;
    card.dataset.status = booking.status;
    const seats = booking.seats.map((s) => s.label).join(", ");
    card.append(el("p", {}, el("strong", { textContent: booking.status === "pending" ? "Held" : "Confirmed" }),
      ` · ${booking.seats.length} seat${booking.seats.length === 1 ? "" : "s"} (${seats}) · ${euros(booking.total_cents)}`));
    if (booking.status === "pending") card.append(...this.#pending(booking));
    else card.append(await this.#tickets(booking));
    const cancel = el("button", { type: "button", className: "secondary", textContent: booking.status === "pending" ? "Release hold" : "Cancel booking" });
    cancel.addEventListener("click", () => this.#act(booking, "cancel", {}, "Cancelled: the seats are free again."));
    card.append(el("div", { className: "actions" }, cancel));
    return card;
  }

  #pending(booking) {
    const countdown = el("span", { className: "countdown" });
    countdown.dataset.expiresAt = booking.expires_at;
    const left = el("p", {}, "Held for ", countdown, ` (until ${clock(booking.expires_at)})`);
    const renew = el("button", { type: "button", className: "secondary", textContent: "Renew hold" });
    renew.addEventListener("click", () => this.#act(booking, "extend", {}, "Renewed: you have more time."));
    const card = el("input", { name: "card", value: "4242 4242 4242 4242", autocomplete: "off" });
    const decline = el("input", { type: "checkbox", name: "decline" });
    const pay = el("button", { type: "button", textContent: `Pay ${euros(booking.total_cents)}` });
    pay.addEventListener("click", () => {
      const payment_token = decline.checked ? "fail" : `card-${card.value.replace(/\D/g, "").slice(-4) || "test"}`;
      this.#act(booking, "confirm", { payment_token }, "Paid: your tickets are below.");
    });
    const form = el("div", { className: "pay" },
      el("label", {}, "Card (simulated) ", card),
      el("label", {}, decline, " Simulate a declined card (sends payment_token \"fail\")"));
    return [left, form, el("div", { className: "actions" }, pay, renew)];
  }

  async #tickets(booking) {
    const grid = el("div", { className: "tickets" });
    for (const ticket of booking.tickets) {
      const figure = el("figure", { className: "ticket" });
      figure.dataset.ticketId = ticket.id;
      figure.dataset.qrCode = ticket.qr_code_data; // what the QR encodes: the signed EVT2 code
      const seat = booking.seats.find((s) => s.id === ticket.seat_id);
      try {
        const blob = await api(`/bookings/${booking.id}/tickets/${ticket.id}/qr.svg`, { blob: true });
        const url = URL.createObjectURL(blob);
        this.urls.push(url);
        figure.append(el("img", { src: url, alt: `QR code of ticket ${ticket.code} (${seat?.label ?? ""})` }));
      } catch (error) {
        figure.append(el("p", { textContent: sentence(error) }));
      }
      figure.append(el("figcaption", { textContent: `${seat?.label ?? ""} · ${ticket.code}` }));
      grid.append(figure);
    }
    return grid;
  }

  async #act(booking, action, body, done) {
    try {
      await api(`/bookings/${booking.id}/${action}`, { method: "POST", json: body });
      this.say(done, true);
    } catch (error) {
      this.say(sentence(error));
    }
    await this.changed();
  }

  #tick() {
    for (const span of this.host.querySelectorAll(".countdown")) {
      const left = Math.max(0, Math.round((Date.parse(span.dataset.expiresAt) - Date.now()) / 1000));
      span.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
      if (left === 0 && !span.dataset.done) {
        span.dataset.done = "1";
        this.say("Your hold ran out and the seats were released. Select seats again to hold them.");
        setTimeout(() => this.changed(), 1500); // the sweeper frees them within seconds
      }
    }
  }
}
