// The history: the last recorded transitions on load, then each new one once, newest first.
//
// Loading and following meet without a gap or a repeat: the page reads the latest
// HISTORY_LOAD transitions from /history, then opens the event stream after the newest id
// it has (?after=, and a reconnecting EventSource sends Last-Event-ID), and shows an id
// only once whichever way it came.

import { apiJson } from "./api.js";
import { $, clock, workerName } from "./format.js";

const HISTORY_LOAD = 100;
const HISTORY_MAX = 200;
const shown = new Set(); // ids in the list
let newest = 0; // the newest id shown: where the event stream resumes

export function newestId() {
  return newest;
}

export function clearHistory() {
  shown.clear();
  newest = 0;
  $("#history").replaceChildren();
  $("#history-empty").hidden = false;
}

// The latest recorded transitions (oldest first, as the API answers them).
export async function loadHistory(workers) {
  const past = (await apiJson("GET", `/history?limit=${HISTORY_LOAD}`)) || [];
  for (const event of past) addHistory(event, workers);
}

// Everything recorded after the newest shown, for when the event stream is down.
export async function catchUpHistory(workers) {
  const later = (await apiJson("GET", `/history?after=${newest}&limit=${HISTORY_MAX}`)) || [];
  return later.filter((event) => addHistory(event, workers));
}

// Adds a transition in its place by id; false if it is already there.
export function addHistory(event, workers) {
  const id = Number(event.id);
  if (Number.isFinite(id) && shown.has(id)) return false;
  const li = entry(event, workers);
  const list = $("#history");
  if (Number.isFinite(id)) {
    shown.add(id);
    newest = Math.max(newest, id);
    li.dataset.id = String(id);
    // Newest first: before the first entry that is older (the stream keeps id order, so
    // this is almost always the top).
    const older = [...list.children].find((other) => Number(other.dataset.id) < id);
    list.insertBefore(li, older || null);
  } else {
    list.prepend(li);
  }
  while (list.children.length > HISTORY_MAX) {
    shown.delete(Number(list.lastElementChild.dataset.id));
    list.lastElementChild.remove();
  }
  $("#history-empty").hidden = true;
  return true;
}

function entry(event, workers) {
  const li = document.createElement("li");
  const time = document.createElement("time");
  time.dateTime = event.at;
  time.textContent = clock(event.at);
  const tag = document.createElement("span");
  tag.className = "tag";
  tag.textContent = event.new || event.old || "?";
  const colour = String(event.new || event.old).replace(" ", "_");
  tag.style.setProperty("--state-colour", `var(--${colour}, #57606a)`);
  const who = document.createElement("span");
  who.className = "who";
  if (event.kind === "worker") {
    const uuid = String(event.subject);
    who.dataset.worker = uuid;
    who.textContent = `${workerName(workers.get(uuid))} ${uuid.slice(0, 8)}`;
  } else {
    who.textContent = `request #${event.subject}`;
  }
  li.append(time, tag, " ", who, change(event));
  const actor = document.createElement("span");
  actor.className = "actor";
  actor.textContent = event.actor ? ` by ${event.actor}` : "";
  li.append(actor);
  return li;
}

function change(event) {
  const why = event.reason ? ` (${event.reason})` : "";
  if (!event.old) return `: ${event.kind === "worker" ? "registered" : "created"}${why}`;
  if (!event.new) return `: removed${why}`;
  // A note (identify, groups, a healthcheck) keeps the state: its reason is the news.
  if (event.old === event.new) return `: ${event.reason || "noted"}`;
  return `: ${event.old} → ${event.new}${why}`;
}

// Names the workers of entries drawn before the rack was loaded; a deregistered worker
// keeps the name it had.
export function nameHistory(workers) {
  for (const who of document.querySelectorAll("#history .who[data-worker]")) {
    const worker = workers.get(who.dataset.worker);
    if (worker) who.textContent = `${workerName(worker)} ${who.dataset.worker.slice(0, 8)}`;
  }
}
