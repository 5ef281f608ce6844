// The Boruta dashboard: asks for an API token, draws the rack, the queue and the history,
// and keeps them current from the coordinator's event stream (polling if it is missing).
// Data reaches the page only through textContent and attributes, never as HTML.

import { act, saveGroups } from "./actions.js";
import { API, ApiError, api, apiJson, forget, remember, session, whoami } from "./api.js";
import { $ } from "./format.js";
import { addHistory, catchUpHistory, clearHistory, loadHistory, nameHistory, newestId } from "./history.js";
import { renderQueue, renderQueueHead, tickQueue } from "./queue.js";
import { renderRack, setPanel, tickRack } from "./rack.js";

const POLL_MS = 3000; // only while the event stream is unavailable
const RETRY_STREAM_MS = 15000;
const WORKER_STATES = new Set(["MAINTENANCE", "IDLE", "RUNNING", "FAILED", "PREPARE", "BUSY"]);

const model = {
  workers: new Map(), // uuid -> WorkerInfo
  jobs: new Map(), // worker uuid -> the IN PROGRESS request on it
  panels: new Map(), // uuid -> {screen, leds, at}
  queue: [], // WAITING requests with their position, in matching order
  usage: null, // GET /usage: the policy in force and each owner's usage (docs/scheduling.md)
};
let source = null;
let pollTimer = null;
let retryTimer = null;
let queueTimer = null;
let historyLoaded = false; // whether the stream may resume after the history's newest id
const fetchSeq = new Map(); // uuid -> number of the newest fetch of that worker
const hooks = { guard, changed: () => streaming() || refreshAll() };

// ---- logging in and out ----------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  const input = $("#token");
  const token = input.value.trim();
  $("#login-error").textContent = "";
  let user;
  try {
    user = await whoami(token);
  } catch (error) {
    $("#login-error").textContent =
      error.status === 401 ? "This token is not valid." : `Cannot log in: ${error.message}`;
    input.focus();
    return;
  }
  remember(token, user);
  input.value = "";
  start();
}

function logout(reason = "") {
  forget();
  stopFollowing();
  // Nothing of the last user's view stays for the next one (nor their admin buttons).
  model.workers.clear();
  model.jobs.clear();
  model.panels.clear();
  $("#rack").replaceChildren();
  clearHistory();
  historyLoaded = false;
  $("#board-view").hidden = true;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#login-view").hidden = false;
  $("#login-error").textContent = reason;
  setLive("off", "not connected");
  $("#token").focus();
}

async function start() {
  $("#login-view").hidden = true;
  $("#board-view").hidden = false;
  $("#logout").hidden = false;
  if (!session.user) {
    try {
      session.user = await whoami();
    } catch (error) {
      if (guard(error)) return;
      session.user = { Name: "?", Admin: false }; // no admin buttons when in doubt
      notice(`Could not tell who you are: ${error.message}`);
    }
  }
  const user = session.user;
  $("#who").textContent = user.Admin ? `${user.Name} (admin)` : user.Name;
  // The recorded past first, so that the stream resumes right after it.
  try {
    await loadHistory(model.workers);
    historyLoaded = true;
  } catch (error) {
    if (guard(error)) return;
    notice(`Could not load the history: ${error.message}`);
  }
  connectEvents();
  await refreshAll();
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

function draw() {
  renderRack(model, Boolean(session.user?.Admin));
  nameHistory(model.workers);
}

async function refreshAll() {
  if (!session.token) return;
  try {
    const [workers, requests] = await Promise.all([
      apiJson("POST", "/workers/list"),
      apiJson("POST", "/reqs/list", { Filter: { States: ["IN PROGRESS"] } }),
    ]);
    model.workers = new Map((workers || []).map((w) => [w.WorkerUUID, w]));
    model.jobs = new Map((requests || []).map((r) => [r.Job.WorkerUUID, r]));
    draw();
    await Promise.all([...model.workers.keys()].map(loadPanel));
    await refreshQueue();
  } catch (error) {
    if (!guard(error)) notice(`Could not load the farm: ${error.message}`);
  }
}

async function poll() {
  await refreshAll();
  if (!session.token || !historyLoaded) return;
  try {
    await catchUpHistory(model.workers);
  } catch (error) {
    guard(error);
  }
}

async function loadPanel(uuid) {
  try {
    setPanel(model, uuid, await apiJson("GET", `/workers/${uuid}/panel`));
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
  draw();
}

async function refreshRequest(id) {
  const request = await apiJson("GET", `/reqs/${id}`);
  for (const [uuid, job] of model.jobs) {
    if (job.ID === request.ID) model.jobs.delete(uuid);
  }
  if (request.State === "IN PROGRESS" && request.Job) model.jobs.set(request.Job.WorkerUUID, request);
  draw();
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
  const usage = await apiJson("GET", "/usage").catch(() => null);
  renderQueue(placed, usage);
}

// ---- the event stream ------------------------------------------------------------------

function streaming() {
  return source !== null && source.readyState === EventSource.OPEN;
}

function stopFollowing() {
  if (source) source.close();
  source = null;
  clearInterval(pollTimer);
  pollTimer = null;
  clearTimeout(retryTimer);
}

function connectEvents() {
  if (source) source.close();
  clearTimeout(retryTimer);
  let wasDown = false;
  // EventSource cannot send headers: this endpoint alone accepts the token in the URL.
  // after=: replay what was recorded since the newest transition shown; without a loaded
  // history, only what happens from now on (a replay from 0 would be the whole store).
  const after = historyLoaded ? `&after=${newestId()}` : "";
  source = new EventSource(`${API}/events?token=${encodeURIComponent(session.token)}${after}`);
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
      if (!pollTimer) pollTimer = setInterval(poll, POLL_MS);
      retryTimer = setTimeout(() => session.token && connectEvents(), RETRY_STREAM_MS);
    } else {
      // EventSource reconnects by itself and sends Last-Event-ID: the replay fills the gap.
      setLive("reconnecting", "reconnecting…");
    }
  };
  source.addEventListener("worker", (e) => onChange(JSON.parse(e.data)));
  source.addEventListener("request", (e) => onChange(JSON.parse(e.data)));
  source.addEventListener("panel", (e) => {
    const panel = JSON.parse(e.data);
    setPanel(model, panel.worker, panel);
  });
}

function onChange(event) {
  if (!addHistory(event, model.workers)) return; // shown already: its change is drawn
  const subject = String(event.subject);
  const known = event.kind === "worker" && model.workers.get(subject);
  if (known && WORKER_STATES.has(event.new)) {
    // Drawn at once from the event, so even a state that lasts a moment (PREPARE) shows;
    // the fetch below then brings the rest of the worker.
    known.State = event.new;
    known.Reason = event.reason || "";
    draw();
  }
  const refresh = event.kind === "worker" ? refreshWorker(subject) : refreshRequest(subject);
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

// ---- start -----------------------------------------------------------------------------

$("#login").addEventListener("submit", login);
$("#logout").addEventListener("click", () => logout());
$("#rack").addEventListener("click", (e) => {
  const button = e.target.closest("button[data-action]");
  if (button) act(button.closest("li"), button, hooks);
});
$("#rack").addEventListener("submit", (e) => {
  e.preventDefault();
  saveGroups(e.target.closest("li"), hooks);
});
renderQueueHead();
let ticks = 0;
setInterval(() => {
  tickRack();
  tickQueue();
  // The health lines say how long ago: redrawn now and then, not only on a change.
  if (++ticks % 30 === 0 && session.token && model.workers.size) draw();
}, 1000);
if (session.token) start();
else $("#token").focus();
