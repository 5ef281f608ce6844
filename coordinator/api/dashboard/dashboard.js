// The Boruta dashboard: asks for an API token, draws the rack, the queue and the history,
// and keeps them current from the coordinator's event stream (polling if it is missing).
// Data reaches the page only through textContent and attributes, never as HTML.

const API = "/api/v1";
const TOKEN_KEY = "boruta.token";
const HISTORY_MAX = 200;
const POLL_MS = 3000; // only while the event stream is unavailable
const IDENTIFY_SECONDS = 30;
const WORKER_STATES = new Set(["MAINTENANCE", "IDLE", "RUNNING", "FAILED", "PREPARE", "BUSY"]);

const $ = (selector, root = document) => root.querySelector(selector);

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const model = {
  token: sessionStorage.getItem(TOKEN_KEY),
  workers: new Map(), // uuid -> WorkerInfo
  jobs: new Map(), // worker uuid -> the IN PROGRESS request on it
  panels: new Map(), // uuid -> {screen, leds, at}
  queue: [], // WAITING requests with their position, in matching order
  usage: null, // GET /usage: the policy in force and each owner's usage (docs/scheduling.md)
};
let source = null;
let pollTimer = null;
let queueTimer = null;
const fetchSeq = new Map(); // uuid -> number of the newest fetch of that worker

// ---- the API ---------------------------------------------------------------------------

async function api(method, path, body) {
  const init = {
    method,
    headers: { Authorization: `Bearer ${model.token}` },
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

async function apiJson(method, path, body) {
  const text = await (await api(method, path, body)).text();
  return text ? JSON.parse(text) : null;
}

// ---- logging in and out ----------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  const input = $("#token");
  model.token = input.value.trim();
  $("#login-error").textContent = "";
  try {
    await apiJson("POST", "/workers/list");
  } catch (error) {
    model.token = null;
    $("#login-error").textContent =
      error.status === 401 ? "This token is not valid." : `Cannot log in: ${error.message}`;
    input.focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, model.token);
  input.value = "";
  start();
}

function logout(reason = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  model.token = null;
  if (source) source.close();
  source = null;
  clearInterval(pollTimer);
  pollTimer = null;
  $("#board-view").hidden = true;
  $("#logout").hidden = true;
  $("#login-view").hidden = false;
  $("#login-error").textContent = reason;
  setLive("off", "not connected");
  $("#token").focus();
}

function start() {
  $("#login-view").hidden = true;
  $("#board-view").hidden = false;
  $("#logout").hidden = false;
  refreshAll();
  connectEvents();
}

// A token revoked while the page is open: back to the login form, saying why.
function guard(error) {
  if (error instanceof ApiError && error.status === 401) {
    logout("Your token is no longer accepted; log in again.");
    return true;
  }
  return false;
}

// ---- loading ---------------------------------------------------------------------------

async function refreshAll() {
  try {
    const [workers, requests] = await Promise.all([
      apiJson("POST", "/workers/list"),
      apiJson("POST", "/reqs/list", { Filter: { States: ["IN PROGRESS"] } }),
    ]);
    model.workers = new Map((workers || []).map((w) => [w.WorkerUUID, w]));
    model.jobs = new Map((requests || []).map((r) => [r.Job.WorkerUUID, r]));
    renderRack();
    await Promise.all([...model.workers.keys()].map(loadPanel));
    await refreshQueue();
  } catch (error) {
    if (!guard(error)) notice(`Could not load the farm: ${error.message}`);
  }
}

async function loadPanel(uuid) {
  try {
    setPanel(uuid, await apiJson("GET", `/workers/${uuid}/panel`));
  } catch (error) {
    if (error.status !== 404) throw error; // 404: the board has not reported one yet
  }
}

async function refreshWorker(uuid) {
  // Answers may overtake each other: only the newest fetch of a worker is drawn.
  const seq = (fetchSeq.get(uuid) || 0) + 1;
  fetchSeq.set(uuid, seq);
  try {
    const worker = await apiJson("GET", `/workers/${uuid}`);
    if (fetchSeq.get(uuid) !== seq) return;
    model.workers.set(uuid, worker);
  } catch (error) {
    if (error.status !== 404) throw error;
    if (fetchSeq.get(uuid) !== seq) return;
    model.workers.delete(uuid); // deregistered
    model.panels.delete(uuid);
  }
  renderRack();
}

async function refreshRequest(id) {
  const request = await apiJson("GET", `/reqs/${id}`);
  for (const [uuid, job] of model.jobs) {
    if (job.ID === request.ID) model.jobs.delete(uuid);
  }
  if (request.State === "IN PROGRESS" && request.Job) model.jobs.set(request.Job.WorkerUUID, request);
  renderRack();
  scheduleQueue();
}

// A burst of request events costs one reload of the queue.
function scheduleQueue() {
  clearTimeout(queueTimer);
  queueTimer = setTimeout(() => refreshQueue().catch(guard), 100);
}

async function refreshQueue() {
  const waiting = (await apiJson("POST", "/reqs/list", { Filter: { States: ["WAITING"] } })) || [];
  // HEAD answers each request's place in the matching order (Boruta-Queue-Position).
  const placed = await Promise.all(
    waiting.map(async (request) => {
      const response = await api("HEAD", `/reqs/${request.ID}`).catch(() => null);
      const position = response?.headers.get("Boruta-Queue-Position");
      return { request, position: position === null || position === undefined ? Infinity : +position };
    }),
  );
  placed.sort((a, b) => a.position - b.position || a.request.ID - b.request.ID);
  model.queue = placed;
  model.usage = await apiJson("GET", "/usage").catch(() => null);
  renderQueue();
}

// ---- the event stream ------------------------------------------------------------------

function connectEvents() {
  if (source) source.close();
  let wasDown = false;
  // EventSource cannot send headers: this endpoint alone accepts the token in the URL.
  source = new EventSource(`${API}/events?token=${encodeURIComponent(model.token)}`);
  source.onopen = () => {
    setLive("live", "live");
    clearInterval(pollTimer);
    pollTimer = null;
    if (wasDown) refreshAll(); // ephemeral panel events may have been missed meanwhile
    wasDown = false;
  };
  source.onerror = () => {
    wasDown = true;
    if (source.readyState === EventSource.CLOSED) {
      // Refused or absent (an older coordinator): poll, and try the stream again later.
      setLive("polling", "polling every 3 s");
      if (!pollTimer) pollTimer = setInterval(refreshAll, POLL_MS);
      setTimeout(() => model.token && connectEvents(), 15000);
    } else {
      setLive("reconnecting", "reconnecting…");
    }
  };
  source.addEventListener("worker", (e) => onChange(JSON.parse(e.data), "worker"));
  source.addEventListener("request", (e) => onChange(JSON.parse(e.data), "request"));
  source.addEventListener("panel", (e) => {
    const panel = JSON.parse(e.data);
    setPanel(panel.worker, panel);
  });
}

function onChange(event, type) {
  addHistory(event, type);
  const subject = String(event.subject);
  const known = type === "worker" && model.workers.get(subject);
  if (known && WORKER_STATES.has(event.new)) {
    // Drawn at once from the event, so even a state that lasts a moment (PREPARE) shows;
    // the fetch below then brings the rest of the worker.
    known.State = event.new;
    known.Reason = event.reason || "";
    renderRack();
  }
  const refresh = type === "worker" ? refreshWorker(subject) : refreshRequest(subject);
  refresh.catch((error) => guard(error) || notice(`Update failed: ${error.message}`));
}

// ---- drawing ---------------------------------------------------------------------------

function setLive(state, text) {
  const live = $("#live");
  live.dataset.state = state;
  live.textContent = text;
}

function notice(text) {
  const box = $("#notice");
  box.textContent = text;
  box.hidden = !text;
}

function chip(text, first = false) {
  const span = document.createElement("span");
  span.className = first ? "chip first" : "chip";
  span.textContent = text;
  return span;
}

function capsChips(caps) {
  // device_type first: it is what people look for in a rack.
  const entries = Object.entries(caps || {}).filter(([k]) => k !== "UUID");
  entries.sort(([a], [b]) => (a === "device_type" ? -1 : b === "device_type" ? 1 : a < b ? -1 : 1));
  return entries.map(([k, v]) => chip(k === "device_type" ? v : `${k}=${v}`, k === "device_type"));
}

function workerName(worker) {
  return worker?.Caps?.device_type || "worker";
}

function renderRack() {
  const rack = $("#rack");
  const sorted = [...model.workers.values()].sort(
    (a, b) => workerName(a).localeCompare(workerName(b)) || a.WorkerUUID.localeCompare(b.WorkerUUID),
  );
  const present = new Set(sorted.map((w) => w.WorkerUUID));
  for (const card of [...rack.children]) {
    if (!present.has(card.dataset.uuid)) card.remove();
  }
  let previous = null;
  for (const worker of sorted) {
    let card = rack.querySelector(`li[data-uuid="${CSS.escape(worker.WorkerUUID)}"]`);
    if (!card) card = newCard(worker.WorkerUUID);
    // Moved only when out of place, so a card being edited keeps its focus.
    const wanted = previous ? previous.nextElementSibling : rack.firstElementChild;
    if (wanted !== card) rack.insertBefore(card, wanted);
    fillCard(card, worker);
    previous = card;
  }
  $("#rack-count").textContent = `(${sorted.length})`;
  $("#rack-empty").hidden = sorted.length > 0;
}

function newCard(uuid) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  card.dataset.uuid = uuid;
  card.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (button) act(card, button);
  });
  $(".groups-form", card).addEventListener("submit", (e) => {
    e.preventDefault();
    saveGroups(card);
  });
  const panel = model.panels.get(uuid);
  if (panel) drawPanel(card, panel);
  return card;
}

function fillCard(card, worker) {
  const state = worker.State;
  const article = $("article", card);
  article.style.setProperty("--state-colour", `var(--${state}, #57606a)`);
  article.setAttribute("aria-label", `${workerName(worker)}: ${state}`);
  $(".device", card).textContent = workerName(worker);
  $(".state", card).textContent = state;
  const job = state === "RUNNING" ? model.jobs.get(worker.WorkerUUID) : null;
  $(".owner", card).textContent = job ? job.Owner?.Name || "?" : "–";
  const left = $(".left", card);
  left.dataset.until = job?.Job?.Timeout || "";
  left.textContent = job ? timeLeft(job.Job.Timeout) : "–";
  const link = $(".link", card);
  link.textContent =
    worker.Connected === undefined ? "–" : worker.Connected ? "connected" : "disconnected";
  link.className = `link ${worker.Connected === false ? "bad" : worker.Connected ? "ok" : ""}`;
  fillHealth($(".health", card), worker.Health);
  $(".groups", card).replaceChildren(...(worker.Groups || []).map((g) => chip(g)));
  if (!worker.Groups?.length) $(".groups", card).textContent = "none";
  $(".caps", card).replaceChildren(...capsChips(worker.Caps));
  const reason = $(".reason", card);
  reason.hidden = state !== "FAILED" || !worker.Reason;
  reason.textContent = worker.Reason ? `Failed: ${worker.Reason}` : "";
  $(".uuid", card).textContent = worker.WorkerUUID;
  card.dataset.groups = (worker.Groups || []).join(", ");
}

function fillHealth(dd, health) {
  if (!health) {
    dd.textContent = "no healthcheck yet";
    dd.className = "health";
    return;
  }
  const failed = health.Checks.filter((c) => !c.Passed);
  const when = ago(health.At);
  dd.textContent = failed.length
    ? `${failed.length} failed (${failed.map((c) => c.Name).join(", ")}), ${when}`
    : `${health.Checks.length} checks passed, ${when}`;
  dd.title = health.Checks.map((c) => `${c.Passed ? "✓" : "✗"} ${c.Name} ${c.Detail}`).join("\n");
  dd.className = `health ${failed.some((c) => c.Critical) ? "bad" : failed.length ? "" : "ok"}`;
}

function setPanel(uuid, panel) {
  if (!uuid || !panel) return;
  model.panels.set(uuid, panel);
  const card = $(`#rack li[data-uuid="${CSS.escape(uuid)}"]`);
  if (card) drawPanel(card, panel);
}

function drawPanel(card, panel) {
  const img = $(".oled", card);
  img.src = `data:image/png;base64,${panel.screen}`;
  img.alt = `OLED of ${$(".device", card).textContent}, drawn ${clock(panel.at)}`;
  img.dataset.at = panel.at;
  panel.leds.forEach((rgb, i) => {
    const dot = $(`.led[data-n="${i + 1}"]`, card);
    const lit = rgb.some((v) => v > 0);
    // The STM drives LEDs at half power or less; scaled so the colour reads on a screen.
    const scale = lit ? 255 / Math.max(...rgb) : 0;
    dot.style.background = lit ? `rgb(${rgb.map((v) => Math.round(v * scale)).join(",")})` : "";
    dot.style.boxShadow = lit ? `0 0 8px ${dot.style.background}` : "";
    dot.dataset.rgb = rgb.join(",");
    dot.title = `LED ${i + 1}: ${lit ? `rgb(${rgb.join(", ")})` : "off"}`;
    dot.setAttribute("role", "img");
    dot.setAttribute("aria-label", dot.title);
  });
}

// The owner's decayed board time in hours: under "fair", the least goes first.
function usageText(owner) {
  const line = model.usage?.Users.find((u) => u.Name === owner);
  return line ? `${(line.Usage / 3600).toFixed(1)} h` : "–";
}

function renderQueue() {
  const rows = model.queue.map(({ request, position }, i) => {
    const tr = document.createElement("tr");
    const cells = [
      Number.isFinite(position) ? String(position + 1) : String(i + 1),
      `#${request.ID}`,
      String(request.Priority),
      request.Owner?.Name || "?",
      usageText(request.Owner?.Name),
      null,
      waited(request.ValidAfter),
    ];
    for (const text of cells) {
      const td = document.createElement("td");
      if (text === null) td.replaceChildren(...capsChips(request.Caps));
      else td.textContent = text;
      tr.append(td);
    }
    tr.lastElementChild.dataset.since = request.ValidAfter;
    if (request.Reason) tr.title = request.Reason; // "over quota: holds 3 of 3 boards"
    return tr;
  });
  $("#queue").replaceChildren(...rows);
  $("#queue-policy").textContent = model.usage ? `· ${model.usage.Policy}` : "";
  $("#queue-count").textContent = `(${rows.length})`;
  $("#queue-empty").hidden = rows.length > 0;
}

function addHistory(event, type) {
  const li = document.createElement("li");
  const time = document.createElement("time");
  time.dateTime = event.at;
  time.textContent = clock(event.at);
  const tag = document.createElement("span");
  tag.className = "tag";
  tag.textContent = event.new || event.kind || "?";
  tag.style.setProperty("--state-colour", `var(--${String(event.new).replace(" ", "_")}, #57606a)`);
  const worker = type === "worker" ? model.workers.get(String(event.subject)) : null;
  const what =
    type === "worker"
      ? ` ${workerName(worker)} ${String(event.subject).slice(0, 8)}`
      : ` request #${event.subject}`;
  const change = event.old ? `: ${event.old} → ${event.new}` : event.new ? `: ${event.new}` : "";
  const why = event.reason ? ` (${event.reason})` : "";
  const actor = document.createElement("span");
  actor.className = "actor";
  actor.textContent = event.actor ? ` by ${event.actor}` : "";
  li.append(time, tag, `${what}${change}${why}`, actor);
  const list = $("#history");
  list.prepend(li);
  while (list.children.length > HISTORY_MAX) list.lastElementChild.remove();
  $("#history-empty").hidden = true;
}

// ---- admin actions ---------------------------------------------------------------------

async function act(card, button) {
  const uuid = card.dataset.uuid;
  const name = $(".device", card).textContent;
  const action = button.dataset.action;
  if (action === "groups") {
    const form = $(".groups-form", card);
    form.hidden = false;
    form.elements.groups.value = card.dataset.groups;
    form.elements.groups.focus();
    return;
  }
  if (action === "cancel-groups") {
    $(".groups-form", card).hidden = true;
    return;
  }
  const calls = {
    maintenance: ["/setstate", { WorkerState: "MAINTENANCE" }, "Maintenance requested."],
    idle: ["/setstate", { WorkerState: "IDLE" }, "Idle requested: the board is being prepared."],
    identify: [`/identify?seconds=${IDENTIFY_SECONDS}`, undefined, `${name} blinks for ${IDENTIFY_SECONDS} s.`],
    deregister: ["/deregister", undefined, "Deregistered."],
  };
  if (action === "deregister" && !confirm(`Deregister ${name} (${uuid})?`)) return;
  const [path, body, done] = calls[action];
  await run(card, button, () => api("POST", `/workers/${uuid}${path}`, body), done);
}

async function saveGroups(card) {
  const form = $(".groups-form", card);
  const groups = form.elements.groups.value.split(",").map((g) => g.trim()).filter(Boolean);
  const ok = await run(
    card,
    $("button[type=submit]", form),
    () => api("POST", `/workers/${card.dataset.uuid}/setgroups`, groups),
    "Groups saved.",
  );
  if (ok) form.hidden = true;
}

async function run(card, button, call, done) {
  const message = $(".message", card);
  message.className = "message";
  message.textContent = "…";
  button.disabled = true;
  try {
    await call();
    message.textContent = done;
    if (!source || source.readyState !== EventSource.OPEN) refreshAll(); // no events to wait for
    return true;
  } catch (error) {
    if (guard(error)) return false;
    message.className = "message refused";
    message.textContent =
      error.status === 403
        ? `Refused: ${error.message}. Log in with an admin's token to do this.`
        : `Failed (${error.status || "network"}): ${error.message}`;
    return false;
  } finally {
    button.disabled = false;
  }
}

// ---- time ------------------------------------------------------------------------------

function timeLeft(until) {
  const seconds = Math.round((Date.parse(until) - Date.now()) / 1000);
  if (!Number.isFinite(seconds)) return "–";
  if (seconds <= 0) return "time is up";
  const h = Math.floor(seconds / 3600);
  const m = String(Math.floor((seconds % 3600) / 60)).padStart(2, "0");
  const s = String(seconds % 60).padStart(2, "0");
  return h ? `${h}:${m}:${s}` : `${m}:${s}`;
}

function ago(when) {
  const seconds = Math.round((Date.now() - Date.parse(when)) / 1000);
  if (!Number.isFinite(seconds)) return "–";
  if (seconds < 0) return `from ${clock(when)}`;
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min ago`;
}

function waited(since) {
  const seconds = Math.round((Date.now() - Date.parse(since)) / 1000);
  if (!Number.isFinite(seconds)) return "–";
  if (seconds < 0) return `from ${clock(since)}`;
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")} min`;
}

function clock(when) {
  const date = new Date(when);
  return Number.isNaN(date.getTime()) ? "?" : date.toLocaleTimeString([], { hour12: false });
}

function tick() {
  for (const left of document.querySelectorAll(".left[data-until]")) {
    if (left.dataset.until) left.textContent = timeLeft(left.dataset.until);
  }
  for (const cell of document.querySelectorAll("#queue td[data-since]")) {
    cell.textContent = waited(cell.dataset.since);
  }
}

// ---- start -----------------------------------------------------------------------------

$("#login").addEventListener("submit", login);
$("#logout").addEventListener("click", () => logout());
setInterval(tick, 1000);
if (model.token) start();
else $("#token").focus();
