// How the dashboard writes things: times and durations, chips for caps and groups.

export const $ = (selector, root = document) => root.querySelector(selector);

export function chip(text, first = false) {
  const span = document.createElement("span");
  span.className = first ? "chip first" : "chip";
  span.textContent = text;
  return span;
}

export function capsChips(caps) {
  // device_type first: it is what people look for in a rack.
  const entries = Object.entries(caps || {}).filter(([k]) => k !== "UUID");
  entries.sort(([a], [b]) => (a === "device_type" ? -1 : b === "device_type" ? 1 : a < b ? -1 : 1));
  return entries.map(([k, v]) => chip(k === "device_type" ? v : `${k}=${v}`, k === "device_type"));
}

export function workerName(worker) {
  return worker?.Caps?.device_type || "worker";
}

function seconds(from, to) {
  return Math.round((Date.parse(to) - Date.parse(from)) / 1000);
}

const now = () => new Date().toISOString();

export function timeLeft(until) {
  const s = seconds(now(), until);
  if (!Number.isFinite(s)) return "–";
  if (s <= 0) return "time is up";
  const h = Math.floor(s / 3600);
  const m = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  return h ? `${h}:${m}:${String(s % 60).padStart(2, "0")}` : `${m}:${String(s % 60).padStart(2, "0")}`;
}

export function ago(when) {
  const s = seconds(when, now());
  if (!Number.isFinite(s)) return "–";
  if (s < 0) return `from ${clock(when)}`;
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
}

export function waited(since) {
  const s = seconds(since, now());
  if (!Number.isFinite(s)) return "–";
  if (s < 0) return `from ${clock(since)}`;
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

export function clock(when) {
  const date = new Date(when);
  return Number.isNaN(date.getTime()) ? "?" : date.toLocaleTimeString([], { hour12: false });
}
