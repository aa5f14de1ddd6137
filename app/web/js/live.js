// WS /events/{id}/live: a snapshot, then changes numbered (epoch, seq).
//
// The client rule (app/api/routes/live.py): keep the (epoch, seq) of what was applied.
// A snapshot replaces everything. A change is applied only when its epoch is ours and
// its seq is ours + 1; the same epoch with a seq not above ours is already in the
// snapshot (ignored). Anything else is a gap or a new epoch: send {"type": "resync"} and
// apply nothing until the snapshot it brings. A dropped socket reconnects with backoff
// (the new connection starts with a snapshot); the page shows "reconnecting" meanwhile.

const CLOSE_UNKNOWN_EVENT = 4404;

export class LiveFeed {
  constructor(eventId, { onSnapshot, onChange, onEvent = () => {}, onState = () => {} }) {
    this.url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/events/${eventId}/live`;
    this.handlers = { onSnapshot, onChange, onEvent, onState };
    this.position = null; // [epoch, seq] of the last snapshot or change applied
    this.waiting = false; // a resync was asked for: drop changes until the snapshot
    this.retry = 0;
    this.closed = false;
    this.resyncs = 0;
  }

  connect() {
    this.handlers.onState(this.retry ? "reconnecting" : "connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.retry = 0;
    };
    socket.onmessage = (message) => this.#receive(JSON.parse(message.data));
    socket.onclose = (closing) => {
      if (this.closed || socket !== this.socket) return;
      if (closing.code === CLOSE_UNKNOWN_EVENT) {
        this.handlers.onState("gone");
        return;
      }
      this.position = null;
      this.handlers.onState("reconnecting");
      // Backoff with jitter: a restarted server is not met by every client at once.
      const delay = Math.min(3000, 250 * 2 ** this.retry++) * (0.5 + Math.random() / 2);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.socket?.close();
  }

  #receive(message) {
    if (message.type === "snapshot") {
      this.position = [message.epoch, message.seq];
      this.waiting = false;
      this.handlers.onState("live");
      this.handlers.onSnapshot(message);
      return;
    }
    if (this.position === null || this.waiting) return;
    const [epoch, seq] = this.position;
    if (message.epoch === epoch && message.seq <= seq) return; // already in the snapshot
    if (message.epoch !== epoch || message.seq !== seq + 1) {
      this.resync();
      return;
    }
    this.position = [epoch, message.seq];
    if (message.type === "seats") this.handlers.onChange(message);
    else this.handlers.onEvent(message);
  }

  /** Ask for a fresh snapshot; nothing is applied until it arrives. */
  resync() {
    this.waiting = true;
    this.resyncs += 1;
    this.handlers.onState("resyncing");
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ type: "resync" }));
  }
}
