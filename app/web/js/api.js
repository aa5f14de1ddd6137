// The Evently HTTP API: one fetch wrapper, the access token, and error sentences.
//
// The token lives in sessionStorage: this tab only, gone when the tab closes, never a
// cookie (so no other site can make the browser send it, and no CSRF to defend).

const TOKEN_KEY = "evently.token";

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** An answer other than 2xx: status, the JSON body's `detail` and `code`, and the rest. */
export class ApiError extends Error {
  constructor(status, body, headers) {
    super(body.detail || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || "";
    this.body = body;
    this.retryAfter = Number(headers?.get("Retry-After")) || body.retry_after || null;
  }
}

/** Call the API; resolves to the parsed JSON (or a Blob), rejects with an ApiError. */
export async function api(path, { method = "GET", json, form, headers = {}, blob = false } = {}) {
  const init = { method, headers: { ...headers } };
  if (session.token) init.headers.Authorization = `Bearer ${session.token}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = new URLSearchParams(form);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: "network", code: "network" });
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, body, response.headers);
  }
  if (blob) return response.blob();
  return response.status === 204 ? null : response.json();
}

export function euros(cents) {
  return `€${(cents / 100).toFixed(cents % 100 ? 2 : 0)}`;
}

export function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function listOf(names) {
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

/** What to tell a person about a failed call. `seatName(id)` names a seat for a 409. */
export function sentence(error, seatName = (id) => `seat ${id}`) {
  if (!(error instanceof ApiError)) return "Something went wrong in this page. Reload it and try again.";
  const wait = error.retryAfter ? `${error.retryAfter} second${error.retryAfter == 1 ? "" : "s"}` : "a moment";
  switch (error.status) {
    case 0:
      return "Evently cannot be reached. Check your connection and try again.";
    case 401:
      return error.code === "invalid_credentials" || /password/i.test(error.message)
        ? "That e-mail and password do not match an account."
        : "Please log in first.";
    case 402:
      return "Your payment was declined and nothing was charged. Your seats stay held: try another card.";
    case 403:
      return error.code.startsWith("admission")
        ? "This sale has a waiting room: join the line, and hold your seats once you are let in."
        : "Your account is not allowed to do that.";
    case 404:
      return "That no longer exists (or is not yours).";
    case 409:
      if (error.code === "seats_unavailable" && error.body.seat_ids?.length) {
        const names = error.body.seat_ids.map(seatName);
        const were = names.length === 1 ? "was" : "were";
        return `Sorry, ${listOf(names)} ${were} just taken by someone else (marked in red on the map). Please choose other seats.`;
      }
      return error.message;
    case 410:
      return "Your hold ran out and the seats were released. Select seats again to hold them.";
    case 422:
      return `Please check what you entered: ${error.message}`;
    case 429:
      return `Too many attempts. Please wait ${wait} and try again.`;
    case 503:
      return `Evently is very busy right now. Please try again in ${wait}.`;
    default:
      return `Evently could not do that (${error.status}): ${error.message}`;
  }
}
