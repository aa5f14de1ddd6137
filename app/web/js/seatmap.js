// The seat map: drawn on one canvas (20,000 seats are 20,000 fillRects, not 20,000 DOM
// nodes), with an accessible layer of real buttons for ONE row at a time.
//
// Keyboard and screen readers: the map is a single Tab stop. The row holding the active
// seat is rendered as a group of <button>s laid exactly over its painted seats (roving
// tabindex: only the active one has tabindex=0). Left/Right move along the row,
// Up/Down to the row above/below (across sections), Home/End to the row's ends,
// PageUp/PageDown to the previous/next section; Enter/Space (the button's own click)
// select. Each button is named "Balcony row 3 seat 12, €45, free" and says
// aria-pressed when selected. At most one row of buttons exists, so the DOM stays the
// same size for a club and for a stadium; the canvas paints only what changed.

import { euros } from "./api.js";

const FREE = 0, HELD = 1, SOLD = 2;
const CODES = { available: FREE, held: HELD, booked: SOLD };
const WORDS = ["free", "held", "sold"];
const COLORS = { free: "#2e8b57", held: "#e6a23c", sold: "#b0b5bb", mine: "#1f5fd6", selected: "#7b2cbf" };
const TAKEN = "#d32f2f";
const HEADER = 26, GAP = 10, LEFT = 44;

export const LEGEND = [
  ["free", "Free"], ["selected", "Your selection"], ["mine", "Yours (held or bought)"],
  ["held", "Held by someone"], ["sold", "Sold"], ["taken", "Just taken (your pick)"],
];
export { COLORS, TAKEN };

export class SeatMap {
  constructor(host, { onToggle = () => {}, onHover = () => {} } = {}) {
    this.host = host;
    this.onToggle = onToggle;
    this.onHover = onHover;
    this.canvas = host.querySelector("canvas");
    this.layer = host.querySelector(".seat-layer");
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    this.selected = new Set(); // seat indexes
    this.mine = new Set();
    this.taken = new Set();
    this.active = 0;
    this.rowButtons = null; // {row, buttons}
    this.canvas.addEventListener("click", (e) => this.#click(e));
    this.canvas.addEventListener("mousemove", (e) => this.#hover(e));
    this.layer.addEventListener("keydown", (e) => this.#key(e));
  }

  /** Build the layout from a seat list; keeps selections of seats that still exist. */
  load(seats) {
    const keep = this.seats ? [...this.selected].map((i) => this.seats[i].id) : [];
    this.seats = seats.map(({ id, section, row, number, price_cents }) => ({ id, section, row, number, price_cents }));
    this.status = new Uint8Array(seats.length);
    this.index = new Map(seats.map((s, i) => [s.id, i]));
    seats.forEach((s, i) => (this.status[i] = CODES[s.status] ?? SOLD));
    this.#layout();
    this.selected = new Set(keep.map((id) => this.index.get(id)).filter((i) => i !== undefined));
    this.active = Math.min(this.active, seats.length - 1);
    this.draw();
    this.#renderRow(false);
  }

  /** A snapshot of the same event: every status replaced, the layout kept if unchanged. */
  replace(seats) {
    if (!this.seats || seats.length !== this.seats.length || seats.some((s, i) => s.id !== this.seats[i].id)) {
      return this.load(seats);
    }
    seats.forEach((s, i) => (this.status[i] = CODES[s.status] ?? SOLD));
    this.draw();
    this.#renderRow(false);
  }

  /** Seats that changed status (a live change): repaint those cells only. */
  apply(ids, status) {
    const code = CODES[status] ?? SOLD;
    let rowTouched = false;
    for (const id of ids) {
      const i = this.index?.get(id);
      if (i === undefined) continue;
      this.status[i] = code;
      if (code === FREE) this.taken.delete(i);
      else if (this.selected.has(i) && !this.mine.has(i)) this.taken.add(i);
      this.#paint(i);
      rowTouched ||= this.rowOf[i] === this.rowButtons?.row;
    }
    if (rowTouched) this.#renderRow(false);
  }

  setMine(ids) {
    this.mine = new Set(ids.map((id) => this.index?.get(id)).filter((i) => i !== undefined));
    for (const i of this.mine) this.selected.delete(i);
    this.redraw();
  }

  markTaken(ids) {
    for (const id of ids) {
      const i = this.index?.get(id);
      if (i !== undefined) {
        this.taken.add(i);
        this.selected.delete(i);
      }
    }
    this.redraw();
  }

  clearSelection() {
    this.selected.clear();
    this.taken.clear();
    this.redraw();
  }

  redraw() {
    if (!this.seats) return;
    this.draw();
    this.#renderRow(false);
  }

  selectedIds() {
    return [...this.selected].map((i) => this.seats[i].id);
  }

  selectedTotal() {
    return [...this.selected].reduce((sum, i) => sum + this.seats[i].price_cents, 0);
  }

  nameOf(id) {
    const i = this.index?.get(id);
    return i === undefined ? `seat ${id}` : this.#name(i);
  }

  /** Sections in map order with their prices and free counts. */
  sections() {
    return this.blocks.map((b) => ({
      name: b.name,
      prices: [...new Set(b.rows.flatMap((r) => r.seats.map((i) => this.seats[i].price_cents)))],
      free: b.rows.reduce((n, r) => n + r.seats.filter((i) => this.status[i] === FREE).length, 0),
    }));
  }

  #layout() {
    const blocks = new Map();
    this.seats.forEach((s, i) => {
      if (!blocks.has(s.section)) blocks.set(s.section, new Map());
      const rows = blocks.get(s.section);
      if (!rows.has(s.row)) rows.set(s.row, []);
      rows.get(s.row).push(i);
    });
    const byNumber = (a, b) => this.seats[a].number - this.seats[b].number;
    const rowOrder = (a, b) => (Number(a) - Number(b)) || a.localeCompare(b);
    this.blocks = [...blocks].map(([name, rows]) => ({
      name,
      rows: [...rows.keys()].sort(rowOrder).map((row) => ({ name: row, seats: rows.get(row).sort(byNumber) })),
    }));
    const widest = Math.max(...this.blocks.flatMap((b) => b.rows.map((r) => r.seats.length)));
    const width = Math.max(320, this.host.parentElement.clientWidth - 2);
    this.cell = Math.max(6, Math.min(24, Math.floor((width - LEFT - 8) / widest)));
    this.rows = []; // flat: {section, name, seats, y}
    this.rowOf = new Int32Array(this.seats.length);
    this.x = new Float32Array(this.seats.length);
    this.y = new Float32Array(this.seats.length);
    let y = 0;
    for (const block of this.blocks) {
      block.y = y;
      y += HEADER;
      for (const row of block.rows) {
        const flat = { section: block.name, name: row.name, seats: row.seats, y, block };
        row.seats.forEach((i, k) => {
          this.rowOf[i] = this.rows.length;
          this.x[i] = LEFT + k * this.cell;
          this.y[i] = y;
        });
        this.rows.push(flat);
        y += this.cell;
      }
      y += GAP;
    }
    this.width = LEFT + widest * this.cell + 8;
    this.height = y;
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.ceil(this.width * ratio);
    this.canvas.height = Math.ceil(this.height * ratio);
    this.canvas.style.width = `${this.width}px`;
    this.canvas.style.height = `${this.height}px`;
    this.layer.style.width = `${this.width}px`;
    this.layer.style.height = `${this.height}px`;
    this.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  }

  draw() {
    const { ctx } = this;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, this.width, this.height);
    ctx.textBaseline = "middle";
    for (const block of this.blocks) {
      const prices = [...new Set(block.rows[0].seats.map((i) => this.seats[i].price_cents))];
      ctx.fillStyle = "#222";
      ctx.font = "600 13px system-ui, sans-serif";
      ctx.fillText(`${block.name} · ${prices.map(euros).join(" / ")}`, 4, block.y + HEADER / 2);
    }
    if (this.cell >= 11) {
      ctx.font = `${Math.min(11, this.cell - 2)}px system-ui, sans-serif`;
      ctx.fillStyle = "#666";
      for (const row of this.rows) ctx.fillText(`row ${row.name}`, 4, row.y + this.cell / 2);
    }
    for (let i = 0; i < this.seats.length; i++) this.#paint(i);
  }

  #state(i) {
    if (this.mine.has(i)) return "mine";
    if (this.selected.has(i)) return this.status[i] === FREE ? "selected" : WORDS[this.status[i]];
    return WORDS[this.status[i]];
  }

  #paint(i) {
    const { ctx, cell } = this;
    const x = this.x[i], y = this.y[i];
    const pad = cell >= 10 ? 2 : 1;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(x, y, cell, cell);
    ctx.fillStyle = COLORS[this.#state(i)];
    ctx.fillRect(x + pad / 2, y + pad / 2, cell - pad, cell - pad);
    if (this.taken.has(i)) {
      ctx.strokeStyle = TAKEN;
      ctx.lineWidth = Math.max(1.5, cell / 6);
      const inset = ctx.lineWidth / 2;
      ctx.strokeRect(x + inset, y + inset, cell - 2 * inset, cell - 2 * inset);
    }
  }

  #name(i) {
    const s = this.seats[i];
    return `${s.section} row ${s.row} seat ${s.number}`;
  }

  #label(i) {
    const state = { mine: "yours", selected: "free, selected" }[this.#state(i)] ?? this.#state(i);
    const taken = this.taken.has(i) ? ", just taken" : "";
    return `${this.#name(i)}, ${euros(this.seats[i].price_cents)}, ${state}${taken}`;
  }

  #toggle(i) {
    this.active = i;
    if (this.status[i] !== FREE || this.mine.has(i)) {
      if (this.selected.delete(i)) this.taken.delete(i);
      else {
        this.onToggle({ refused: this.#name(i) });
        this.#renderRow(true);
        return;
      }
    } else if (!this.selected.delete(i)) {
      this.selected.add(i);
    }
    this.taken.delete(i);
    this.#paint(i);
    this.#renderRow(true);
    this.onToggle({ seat: this.#name(i) });
  }

  #renderRow(focus) {
    const row = this.rowOf[this.active];
    const line = this.rows[row];
    const hadFocus = this.layer.contains(document.activeElement);
    if (this.rowButtons?.row !== row) {
      const group = document.createElement("div");
      group.className = "seat-row";
      group.setAttribute("role", "group");
      group.setAttribute("aria-label", `${line.section} row ${line.name}`);
      const buttons = line.seats.map((i) => {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "seat";
        b.dataset.seatId = this.seats[i].id;
        b.style.left = `${this.x[i]}px`;
        b.style.top = `${this.y[i]}px`;
        b.style.width = b.style.height = `${this.cell}px`;
        b.addEventListener("click", () => this.#toggle(i));
        b.addEventListener("focus", () => (this.active = i));
        group.append(b);
        return b;
      });
      this.layer.replaceChildren(group);
      this.rowButtons = { row, buttons };
    }
    line.seats.forEach((i, k) => {
      const b = this.rowButtons.buttons[k];
      b.tabIndex = i === this.active ? 0 : -1;
      b.setAttribute("aria-label", this.#label(i));
      b.dataset.status = this.#state(i);
      b.dataset.taken = this.taken.has(i);
      b.setAttribute("aria-pressed", String(this.selected.has(i)));
      b.setAttribute("aria-disabled", String(this.status[i] !== FREE && !this.selected.has(i)));
    });
    if (focus || hadFocus) this.rowButtons.buttons[line.seats.indexOf(this.active)].focus();
  }

  /** Move the active seat (and focus) to seat index `i`. */
  focusSeat(i) {
    this.active = i;
    this.#renderRow(true);
  }

  #key(event) {
    const row = this.rowOf[this.active];
    const line = this.rows[row];
    const k = line.seats.indexOf(this.active);
    const rowAt = (r, col) => this.rows[r].seats[Math.min(col, this.rows[r].seats.length - 1)];
    const blockStart = (b) => this.rows.findIndex((r) => r.block === this.blocks[b]);
    const block = this.blocks.indexOf(line.block);
    const moves = {
      ArrowLeft: () => line.seats[Math.max(0, k - 1)],
      ArrowRight: () => line.seats[Math.min(line.seats.length - 1, k + 1)],
      ArrowUp: () => (row > 0 ? rowAt(row - 1, k) : this.active),
      ArrowDown: () => (row < this.rows.length - 1 ? rowAt(row + 1, k) : this.active),
      Home: () => line.seats[0],
      End: () => line.seats[line.seats.length - 1],
      PageUp: () => rowAt(blockStart(Math.max(0, block - 1)), k),
      PageDown: () => rowAt(blockStart(Math.min(this.blocks.length - 1, block + 1)), k),
    };
    if (!moves[event.key]) return;
    event.preventDefault();
    this.focusSeat(moves[event.key]());
  }

  #at(event) {
    const box = this.canvas.getBoundingClientRect();
    const x = event.clientX - box.left, y = event.clientY - box.top;
    const block = this.blocks.findLast((b) => b.y <= y);
    if (!block) return undefined;
    const row = block.rows[Math.floor((y - block.y - HEADER) / this.cell)];
    return row?.seats[Math.floor((x - LEFT) / this.cell)];
  }

  #click(event) {
    const i = this.#at(event);
    if (i !== undefined) this.#toggle(i);
  }

  #hover(event) {
    if (this.hoverPending) return;
    this.hoverPending = true;
    requestAnimationFrame(() => {
      this.hoverPending = false;
      const i = this.#at(event);
      this.onHover(i === undefined ? "" : this.#label(i));
    });
  }
}
