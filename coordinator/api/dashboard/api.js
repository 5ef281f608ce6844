// The API as the dashboard calls it: the session's token, and fetch with its errors.

export const API = "/api/v1";
const TOKEN_KEY = "boruta.token";

// The token lives in this tab only; `user` is what /whoami said of it (null: not asked yet).
export const session = { token: sessionStorage.getItem(TOKEN_KEY), user: null };

export function remember(token, user) {
  session.token = token;
  session.user = user;
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forget() {
  session.token = null;
  session.user = null;
  sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(method, path, body, token = session.token) {
  const init = {
    method,
    headers: { Authorization: `Bearer ${token}` },
    // Without credentials the browser never pops its own Basic-auth dialog on a 401.
    credentials: "omit",
    cache: "no-store",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).message || message;
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

export async function apiJson(method, path, body, token = session.token) {
  const text = await (await api(method, path, body, token)).text();
  return text ? JSON.parse(text) : null;
}

// Who the token belongs to: {Name, Admin, Groups}. Admin buttons are drawn only for an
// admin; the API refuses the others' admin calls anyway (403).
export function whoami(token = session.token) {
  return apiJson("GET", "/whoami", undefined, token);
}
