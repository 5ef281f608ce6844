// The queue: WAITING requests in matching order, one row each, drawn from QUEUE_COLUMNS.

import { $, capsChips, waited } from "./format.js";

// One entry per column, and nothing else to change to add one: the header, the cells and
// the narrow layout's labels (each cell's data-label) all come from this list.
//   head: the header's text; label: the cell's name on a phone (defaults to head);
//   cell(entry): a string or a list of nodes, for {request, position, index};
//   since(entry): an instant the cell counts from, redrawn every second by tick().
export const QUEUE_COLUMNS = [
  {
    key: "place",
    head: "#",
    label: "Place",
    cell: ({ position, index }) => String((Number.isFinite(position) ? position : index) + 1),
  },
  { key: "request", head: "Request", cell: ({ request }) => `#${request.ID}` },
  { key: "priority", head: "Priority", cell: ({ request }) => String(request.Priority) },
  { key: "owner", head: "Owner", cell: ({ request }) => request.Owner?.Name || "?" },
  {
    key: "usage",
    head: "Usage",
    title: "the owner's recent board time (decayed); under fair, the least goes first",
    cell: ({ request, usage }) => usageText(usage, request.Owner?.Name),
  },
  { key: "caps", head: "Caps", cell: ({ request }) => capsChips(request.Caps) },
  {
    key: "waiting",
    head: "Waiting",
    cell: ({ request }) => waited(request.ValidAfter),
    since: ({ request }) => request.ValidAfter,
  },
];

export function renderQueueHead() {
  const row = document.createElement("tr");
  for (const column of QUEUE_COLUMNS) {
    const th = document.createElement("th");
    th.scope = "col";
    th.className = `col-${column.key}`;
    th.textContent = column.head;
    if (column.title) th.title = column.title;
    row.append(th);
  }
  $("#queue-head").replaceChildren(row);
}

// The owner's decayed board time in hours (GET /usage, docs/scheduling.md).
function usageText(usage, owner) {
  const line = usage?.Users?.find((u) => u.Name === owner);
  return line ? `${(line.Usage / 3600).toFixed(1)} h` : "–";
}

// `queue`: [{request, position}] sorted; position is the Boruta-Queue-Position (0-based),
// Infinity when the coordinator did not say. `usage`: GET /usage, or null.
export function renderQueue(queue, usage = null) {
  const rows = queue.map(({ request, position }, index) => {
    const entry = { request, position, index, usage };
    const tr = document.createElement("tr");
    tr.dataset.id = String(request.ID);
    for (const column of QUEUE_COLUMNS) {
      const td = document.createElement("td");
      td.className = `col-${column.key}`;
      td.dataset.label = column.label || column.head;
      const content = column.cell(entry);
      if (Array.isArray(content)) td.replaceChildren(...content);
      else td.textContent = content;
      if (column.since) td.dataset.since = column.since(entry);
      tr.append(td);
    }
    if (request.Reason) tr.title = request.Reason; // "over quota: holds 3 of 3 boards"
    return tr;
  });
  $("#queue").replaceChildren(...rows);
  $("#queue-policy").textContent = usage ? `· ${usage.Policy}` : "";
  $("#queue-count").textContent = `(${rows.length})`;
  $("#queue-empty").hidden = rows.length > 0;
}

export function tickQueue() {
  for (const cell of document.querySelectorAll("#queue td[data-since]")) {
    cell.textContent = waited(cell.dataset.since);
  }
}
