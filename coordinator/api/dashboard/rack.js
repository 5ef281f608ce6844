// The rack: one card per worker, with its state, job, link, health, groups, caps and a
// mirror of its OLED and LEDs. Admin buttons are in every card, shown to admins only.

import { $, ago, capsChips, chip, clock, timeLeft, workerName } from "./format.js";

// States in which a worker serves jobs: a failed critical healthcheck sends a worker in
// any of them to FAILED at once (docs/boruta-api.md §worker states), so in these states a
// failing last report can only predate the board's return to service.
const IN_SERVICE = new Set(["IDLE", "RUNNING", "PREPARE"]);

// `model`: {workers: Map uuid -> WorkerInfo, jobs: Map uuid -> request, panels: Map}.
export function renderRack(model, admin) {
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
    if (!card) card = newCard(worker.WorkerUUID, model.panels.get(worker.WorkerUUID));
    // Moved only when out of place, so a card being edited keeps its focus.
    const wanted = previous ? previous.nextElementSibling : rack.firstElementChild;
    if (wanted !== card) rack.insertBefore(card, wanted);
    fillCard(card, worker, model.jobs.get(worker.WorkerUUID), admin);
    previous = card;
  }
  $("#rack-count").textContent = `(${sorted.length})`;
  $("#rack-empty").hidden = sorted.length > 0;
}

function newCard(uuid, panel) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  card.dataset.uuid = uuid;
  if (panel) drawPanel(card, panel);
  return card;
}

function fillCard(card, worker, request, admin) {
  const state = worker.State;
  const article = $("article", card);
  article.style.setProperty("--state-colour", `var(--${state}, #57606a)`);
  article.setAttribute("aria-label", `${workerName(worker)}: ${state}`);
  $(".device", card).textContent = workerName(worker);
  $(".state", card).textContent = state;
  const job = state === "RUNNING" ? request : null;
  $(".owner", card).textContent = job ? job.Owner?.Name || "?" : "–";
  const left = $(".left", card);
  left.dataset.until = job?.Job?.Timeout || "";
  left.textContent = job ? timeLeft(job.Job.Timeout) : "–";
  const link = $(".link", card);
  link.textContent =
    worker.Connected === undefined ? "–" : worker.Connected ? "connected" : "disconnected";
  link.className = `link ${worker.Connected === false ? "bad" : worker.Connected ? "ok" : ""}`;
  const health = healthLine(state, worker.Health);
  const dd = $(".health", card);
  dd.textContent = health.text;
  dd.title = health.title;
  dd.className = `health ${health.tone}`;
  $(".groups", card).replaceChildren(...(worker.Groups || []).map((g) => chip(g)));
  if (!worker.Groups?.length) $(".groups", card).textContent = "none";
  $(".caps", card).replaceChildren(...capsChips(worker.Caps));
  const reason = $(".reason", card);
  reason.hidden = state !== "FAILED" || !worker.Reason;
  reason.textContent = worker.Reason ? `Failed: ${worker.Reason}` : "";
  $(".uuid", card).textContent = worker.WorkerUUID;
  card.dataset.groups = (worker.Groups || []).join(", ");
  // Not drawn at all for others: a button that can only answer 403 is noise.
  $(".actions", card).hidden = !admin;
  if (!admin) $(".groups-form", card).hidden = true;
}

// The health line: {text, tone, title}. Tones: ok (green), bad (red), warn (amber), old
// (muted: a failure from before the board was put back in service).
//
// A board is back in service because someone (or its dryad, registering again) decided
// so after that report; a red line under a green IDLE would contradict the state and send
// the admin to look again. Clearing the line would lose what failed last, which is what
// they need if it fails again, and suggest a check that never ran. So the line stays,
// muted, and says that it is old; the next check replaces it.
export function healthLine(state, health) {
  if (!health) return { text: "no healthcheck yet", tone: "", title: "" };
  const title = health.Checks.map((c) => `${c.Passed ? "✓" : "✗"} ${c.Name} ${c.Detail}`).join("\n");
  const failed = health.Checks.filter((c) => !c.Passed);
  const names = failed.map((c) => c.Name).join(", ");
  const when = ago(health.At);
  if (!failed.length) return { text: `${health.Checks.length} checks passed, ${when}`, tone: "ok", title };
  if (!failed.some((c) => c.Critical)) {
    return { text: `${failed.length} failed (${names}; not critical), ${when}`, tone: "warn", title };
  }
  if (IN_SERVICE.has(state)) {
    return {
      text: `last check failed ${when} (before it was put back in service): ${names}`,
      tone: "old",
      title: `${title}\nchecked at ${clock(health.At)}; the next check replaces this`,
    };
  }
  return { text: `${failed.length} failed (${names}), ${when}`, tone: "bad", title };
}

export function setPanel(model, uuid, panel) {
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

export function tickRack() {
  for (const left of document.querySelectorAll(".left[data-until]")) {
    if (left.dataset.until) left.textContent = timeLeft(left.dataset.until);
  }
}
