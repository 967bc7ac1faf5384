// The venue dashboard's page: renders the state the server pushes (server-sent events).
// Everything from the bus is shown with textContent, never as markup.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const commandsOn = document.body.dataset.commands === "on";
const rows = new Map();  // gate -> {tr, cells}
const COLUMNS = ["gate", "zone", "state", "mode", "clock", "bundle", "outbox", "readers", "version", "last",
                 "entries", "exits", "refused", "per_minute", "notes", "commands"];

// What each section was last drawn from: a push redraws only the sections whose data changed
// (the lanes' cells are compared one by one in renderLanes), so a push costs the browser little.
const drawnFrom = new Map();

function changed(section, data) {
  const text = JSON.stringify(data);
  if (drawnFrom.get(section) === text) return false;
  drawnFrom.set(section, text);
  return true;
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function set(node, text) {
  text = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== text) node.textContent = text;
}

function lastDecision(last) {
  if (!last) return "–";
  const verb = last.accepted ? "let in" : "refused: " + last.reason;
  return `${verb} (${Math.round(last.age)} s ago)`;
}

function stateWord(lane) {
  return {ok: "up", warn: "up, check", down: "down", unknown: "unknown"}[lane.health] || lane.health;
}

function renderTotals(state) {
  const t = state.totals;
  const box = document.getElementById("totals");
  const items = [["lanes up", `${t.up} / ${t.lanes}`, t.down ? "bad" : "good"], ["lanes down", t.down, t.down ? "bad" : ""],
                 ["entries", t.entries, ""], ["exits", t.exits, ""], ["forced passages", t.forced, t.forced ? "warn" : ""],
                 ["conflicts", t.conflicts, t.conflicts ? "warn" : ""], ["tamper", t.tamper, t.tamper ? "bad" : ""]];
  if (box.children.length !== items.length) {
    box.replaceChildren(...items.map(([label]) => {
      const card = el("div", {class: "total", "data-total": label});
      card.append(el("span", {class: "value"}), el("span", {class: "label"}, label));
      return card;
    }));
  }
  items.forEach(([, value, cls], i) => {
    const card = box.children[i];
    set(card.firstChild, value);
    card.className = "total " + cls;
  });
  const bus = document.getElementById("bus");
  set(bus, state.connected ? "bus: connected" : "bus: NOT connected");
  bus.className = "pill " + (state.connected ? "good" : "bad");
  set(document.getElementById("bundle"), state.bundle ? `bundle ${state.bundle}` : "no bundle");
}

function renderZones(state) {
  if (!changed("zones", [state.zones, state.alarm_percent])) return;
  const box = document.getElementById("zones");
  box.replaceChildren(...state.zones.map((z) => {
    const card = el("div", {class: "zone" + (z.alarm ? " alarm" : ""), id: "zone-" + z.zone, "data-zone": z.zone});
    card.append(el("h3", {}, z.zone));
    card.append(el("div", {class: "occupancy"}, z.capacity ? `${z.occupancy} / ${z.capacity}` : `${z.occupancy}`));
    const bar = el("div", {class: "bar"});
    const fill = el("div", {class: "fill"});
    fill.style.width = Math.min(100, z.percent || 0) + "%";
    bar.append(fill);
    card.append(bar);
    const words = z.capacity ? `${z.percent} % full` : "no capacity set";
    card.append(el("div", {class: "detail"}, `${words} · in ${z.entries} · out ${z.exits} · ${z.per_minute}/min`));
    if (z.alarm) card.append(el("div", {class: "alarm-text"}, `ALARM: at or over ${state.alarm_percent} %`));
    return card;
  }));
}

function renderChart(state) {
  if (!changed("chart", state.chart)) return;
  const svg = document.getElementById("chart");
  const max = Math.max(1, ...state.chart);
  const width = 600 / state.chart.length;
  const ns = "http://www.w3.org/2000/svg";
  if (svg.children.length !== state.chart.length) {  // the bars are made once and then only resized
    svg.replaceChildren(...state.chart.map((n, i) => {
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", (i * width).toFixed(1));
      rect.setAttribute("width", (width - 1).toFixed(1));
      rect.append(document.createElementNS(ns, "title"));
      return rect;
    }));
  }
  state.chart.forEach((n, i) => {
    const rect = svg.children[i];
    const h = Math.round(110 * n / max);
    if (rect.getAttribute("height") !== String(h)) {
      rect.setAttribute("y", 115 - h);
      rect.setAttribute("height", h);
    }
    set(rect.firstChild, `${n} entries, ${state.chart.length - 1 - i} min ago`);
  });
}

function renderRefusals(state) {
  if (!changed("refusals", state.refusals)) return;
  const list = document.getElementById("refusals");
  const entries = Object.entries(state.refusals);
  list.replaceChildren(...(entries.length ? entries.map(([reason, n]) => el("li", {"data-reason": reason}, `${reason}: ${n}`))
                                          : [el("li", {class: "muted"}, "none")]));
}

function commandCell(gate) {
  const td = el("td", {class: "commands"});
  if (!commandsOn) { td.textContent = "–"; return td; }
  const mode = el("select", {"aria-label": "mode for " + gate, class: "mode-select"});
  for (const m of ["normal", "free", "locked"]) mode.append(el("option", {value: m}, m));
  const setMode = el("button", {type: "button", class: "cmd-set-mode"}, "Set mode");
  setMode.addEventListener("click", () => ask({gate, command: "set_mode", mode: mode.value}));
  const open = el("button", {type: "button", class: "cmd-open-once"}, "Open once");
  open.addEventListener("click", () => ask({gate, command: "open_once", direction: "in"}));
  const reload = el("button", {type: "button", class: "cmd-reload"}, "Reload");
  reload.addEventListener("click", () => ask({gate, command: "reload"}));
  td.append(mode, setMode, open, reload);
  return td;
}

function renderLanes(state) {
  const body = document.querySelector("#lanes tbody");
  const seen = new Set();
  for (const lane of state.lanes) {
    seen.add(lane.gate);
    let row = rows.get(lane.gate);
    if (!row) {
      const tr = el("tr", {id: "lane-" + lane.gate, "data-gate": lane.gate});
      const cells = {};
      for (const name of COLUMNS) {
        cells[name] = name === "commands" ? commandCell(lane.gate) : el("td", {class: "c-" + name});
        tr.append(cells[name]);
      }
      row = {tr, cells};
      rows.set(lane.gate, row);
      body.append(tr);
    }
    const c = row.cells;
    row.tr.dataset.health = lane.health;
    row.tr.className = "health-" + lane.health;
    set(c.gate, lane.gate);
    set(c.zone, lane.zone || "–");
    set(c.state, stateWord(lane));
    set(c.mode, lane.mode || "–");
    set(c.clock, lane.clock === null ? "–" : (lane.clock ? "synced" : "NOT synced"));
    set(c.bundle, lane.bundle ?? "–");
    set(c.outbox, lane.outbox ?? "–");
    set(c.readers, lane.readers.join(", ") || "–");
    set(c.version, lane.version || "–");
    set(c.last, lastDecision(lane.last));
    set(c.entries, lane.entries);
    set(c.exits, lane.exits);
    set(c.refused, lane.refused);
    set(c.per_minute, lane.per_minute);
    set(c.notes, lane.notes.join("; "));
  }
  for (const [gate, row] of rows) {
    if (!seen.has(gate)) { row.tr.remove(); rows.delete(gate); }
  }
}

function renderCommands(state) {
  if (!changed("commands", state.commands)) return;
  const list = document.getElementById("commands");
  list.replaceChildren(...state.commands.map((c) => {
    const what = c.command === "set_mode" ? `set_mode ${c.mode}` : c.command;
    const answer = c.state === "sent" ? "waiting for the lane's answer…" : `${c.state}: ${c.answer}`;
    return el("li", {class: "command " + c.state, "data-nonce": c.nonce.slice(0, 12)}, `${c.gate} · ${what} · by ${c.user} · ${answer}`);
  }));
}

function render(state) {
  const started = performance.now();
  renderTotals(state);
  renderZones(state);
  renderChart(state);
  renderRefusals(state);
  renderLanes(state);
  renderCommands(state);
  document.body.dataset.stateAt = state.now;
  window.gateRenderMs = performance.now() - started;
}

async function post(path, body) {
  const response = await fetch(path, {method: "POST", headers: {"content-type": "application/json", "x-csrf-token": csrf},
                                      body: JSON.stringify(body), credentials: "same-origin"});
  let data = {};
  try { data = await response.json(); } catch (e) { data = {ok: false, error: "no answer from the dashboard"}; }
  return data;
}

let pendingToken = null;

async function ask(command) {
  const dialog = document.getElementById("confirm");
  const answer = await post("/api/commands/prepare", command);
  set(document.getElementById("confirm-error"), answer.ok ? "" : answer.error);
  set(document.getElementById("confirm-question"), answer.ok ? answer.question : "Command not possible");
  document.getElementById("confirm-ok").disabled = !answer.ok;
  pendingToken = answer.ok ? answer.token : null;
  dialog.showModal();
}

document.getElementById("confirm-ok").addEventListener("click", async () => {
  const dialog = document.getElementById("confirm");
  if (!pendingToken) return;
  const token = pendingToken;
  pendingToken = null;
  const answer = await post("/api/commands/confirm", {token});
  if (answer.ok) { dialog.close(); } else { set(document.getElementById("confirm-error"), answer.error); }
});
document.getElementById("confirm-cancel").addEventListener("click", () => {
  pendingToken = null;
  document.getElementById("confirm").close();
});
document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/logout", {method: "POST", headers: {"x-csrf-token": csrf}, credentials: "same-origin"});
  window.location.assign("/login");
});

render(JSON.parse(document.getElementById("initial-state").textContent));
const live = document.getElementById("live");
const source = new EventSource("/events");
source.onopen = () => { set(live, "live"); live.className = "pill good"; };
source.onerror = () => { set(live, "reconnecting…"); live.className = "pill bad"; };
source.onmessage = (event) => render(JSON.parse(event.data));
