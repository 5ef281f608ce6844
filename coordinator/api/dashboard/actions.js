// An admin's buttons on a card: maintenance, idle, identify, groups, deregister.

import { api } from "./api.js";
import { $ } from "./format.js";

const IDENTIFY_SECONDS = 30;

// `hooks.guard(error)`: true if the error was handled (a revoked token logs out);
// `hooks.changed()`: the farm changed, for a page that gets no events to redraw.
export async function act(card, button, hooks) {
  const uuid = card.dataset.uuid;
  const name = $(".device", card).textContent;
  const action = button.dataset.action;
  const form = $(".groups-form", card);
  if (action === "groups") {
    form.hidden = false;
    form.elements.groups.value = card.dataset.groups;
    form.elements.groups.focus();
    return;
  }
  if (action === "cancel-groups") {
    form.hidden = true;
    return;
  }
  const calls = {
    maintenance: ["/setstate", { WorkerState: "MAINTENANCE" }, "Maintenance requested."],
    idle: ["/setstate", { WorkerState: "IDLE" }, "Idle requested: the board is being prepared."],
    identify: [`/identify?seconds=${IDENTIFY_SECONDS}`, undefined, `${name} blinks for ${IDENTIFY_SECONDS} s.`],
    deregister: ["/deregister", undefined, "Deregistered."],
  };
  if (!(action in calls)) return;
  if (action === "deregister" && !confirm(`Deregister ${name} (${uuid})?`)) return;
  const [path, body, done] = calls[action];
  await run(card, button, () => api("POST", `/workers/${uuid}${path}`, body), done, hooks);
}

export async function saveGroups(card, hooks) {
  const form = $(".groups-form", card);
  const groups = form.elements.groups.value.split(",").map((g) => g.trim()).filter(Boolean);
  const call = () => api("POST", `/workers/${card.dataset.uuid}/setgroups`, groups);
  const ok = await run(card, $("button[type=submit]", form), call, "Groups saved.", hooks);
  if (ok) form.hidden = true;
}

async function run(card, button, call, done, hooks) {
  const message = $(".message", card);
  message.className = "message";
  message.textContent = "…";
  button.disabled = true;
  try {
    await call();
    message.textContent = done;
    hooks.changed();
    return true;
  } catch (error) {
    if (hooks.guard(error)) return false;
    message.className = "message refused";
    // A 403 here means the token lost its admin rights since the page asked /whoami.
    message.textContent =
      error.status === 403
        ? `Refused: ${error.message}. Log in with an admin's token to do this.`
        : `Failed (${error.status || "network"}): ${error.message}`;
    return false;
  } finally {
    button.disabled = false;
  }
}
