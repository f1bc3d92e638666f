// The wallboard: a snapshot then deltas over /ws/supervisor; the page
// counts waits and times in state itself from the start times it gets.
"use strict";
let token = sessionStorage.getItem("cti.supervisor") || "";
let board = null;
let skew = 0;  // server clock - browser clock, seconds: wall screens run NTP
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}
const now = () => Date.now() / 1000 + skew;
const pct = (v) => (v === null || v === undefined ? "—" : (v * 100).toFixed(0) + "%");
const secs = (v) => (v === null || v === undefined ? "—" : Math.round(v) + " s");
function dur(s) { s = Math.max(0, Math.round(s)); return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }

async function api(method, path, body) {
  const response = await fetch(path, { method, headers: { "Authorization": "Bearer " + token,
    "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
  const answer = await response.json().catch(() => ({}));
  $("action-result").textContent = response.ok ? "done" : (answer.detail || response.statusText);
  return response.ok;
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const response = await fetch("/api/v1/supervisor/login", { method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }) });
  if (!response.ok) { $("login-error").textContent = "Invalid credentials"; return; }
  token = (await response.json()).token;
  sessionStorage.setItem("cti.supervisor", token);
  start();
});

function start() {
  $("login-form").hidden = true;
  $("board").hidden = false;
  $("csv").addEventListener("click", async (e) => {
    e.preventDefault();
    const r = await fetch("/api/v1/supervisor/intervals.csv", { headers: { "Authorization": "Bearer " + token } });
    const url = URL.createObjectURL(await r.blob());
    const a = el("a"); a.href = url; a.download = "intervals.csv"; a.click();
  });
  connect();
  setInterval(render, 1000);
  $("cb-status").addEventListener("change", () => loadCallbacks(false));
  $("cb-service").addEventListener("change", () => loadCallbacks(false));
  $("cb-more").addEventListener("click", () => loadCallbacks(true));
  loadCallbacks(false);
  setInterval(() => { if (!callbacks.paged) loadCallbacks(false); }, 3000);
}

// Callbacks and their attempts: GET /api/v1/supervisor/callbacks, polled
// (they change on the scale of seconds); the first page refreshes itself
// until "more" is asked for.
const callbacks = { rows: [], next: null, paged: false };

async function loadCallbacks(more) {
  const params = new URLSearchParams({ limit: "50" });
  if ($("cb-status").value) params.set("status", $("cb-status").value);
  if ($("cb-service").value) params.set("service", $("cb-service").value);
  if (more && callbacks.next) params.set("cursor", callbacks.next);
  const response = await fetch("/api/v1/supervisor/callbacks?" + params,
    { headers: { "Authorization": "Bearer " + token } }).catch(() => null);
  if (!response || !response.ok) return;
  const page = await response.json();
  callbacks.rows = more ? callbacks.rows.concat(page.callbacks) : page.callbacks;
  callbacks.next = page.next;
  callbacks.paged = more;
  renderCallbacks();
}

const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "—");

function renderCallbacks() {
  const names = new Map((board ? board.agents : []).map((a) => [a.id, a.name]));
  const body = $("callbacks").tBodies[0];
  body.replaceChildren();
  for (const c of callbacks.rows) {
    const tr = el("tr");
    tr.dataset.callback = c.id;
    const attempts = el("ol", null, "attempts");
    for (const a of c.attempts) {
      const item = el("li", `${clock(a.at)} ${(a.outcome || "under way").replace("_", " ")} · `
        + `${names.get(a.agent) || a.agent} (${a.mode})` + (a.requeued ? " · re-offered" : ""));
      item.dataset.outcome = a.outcome || "";
      attempts.append(item);
    }
    const last = el("td"); last.append(attempts);
    const when = c.finished_at ? c.finished_at : c.due_at;
    tr.append(el("td", (c.name ? c.name + " " : "") + c.number), el("td", c.service),
      el("td", c.status + (c.outcome ? ` (${c.outcome.replace("_", " ")})` : ""), "cb-status status-" + c.status),
      el("td", clock(when)), last);
    body.append(tr);
  }
  $("cb-more").hidden = !callbacks.next;
}

function fillServices() {
  const select = $("cb-service");
  if (select.options.length > 1 || !board) return;
  for (const s of board.services) select.append(el("option", s.name));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/supervisor?token=${encodeURIComponent(token)}`);
  ws.onopen = () => { $("link").textContent = "online"; };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "snapshot") { board = msg.board; fillServices(); }
    else if (msg.type === "delta" && board) {
      Object.assign(board, msg.changes);
      if (msg.agent_rows) {
        const at = new Map(board.agents.map((a, i) => [a.id, i]));
        for (const row of msg.agent_rows) {
          const i = at.get(row.id);
          if (i !== undefined) board.agents[i] = row;
        }
      }
    }
    render();
  };
  ws.onclose = () => { $("link").textContent = "offline"; setTimeout(connect, 2000); };
}

function render() {
  if (!board) return;
  renderServices(); renderWaiting(); renderAgents(); renderAbandoned(); renderChart();
}

function renderServices() {
  const body = $("services").tBodies[0];
  body.replaceChildren();
  const rows = [...board.services, { name: "all", ...board.overall, target: null }];
  for (const s of rows) {
    const tr = el("tr");
    tr.dataset.service = s.name;
    const longest = s.oldest_queued_at === null ? null : now() - s.oldest_queued_at;
    const target = s.target;
    const slBreach = target && s.interval.service_level !== null && s.interval.service_level * 100 < target.percent;
    const waitBreach = target && longest !== null && longest > target.seconds;
    tr.append(el("td", s.name), el("td", s.waiting, "waiting"),
      el("td", longest === null ? "—" : dur(longest), waitBreach ? "breach" : ""),
      el("td", pct(s.interval.service_level), "sl " + (slBreach ? "breach" : "ok")),
      el("td", pct(s.today.service_level)), el("td", s.today.offered), el("td", s.today.answered),
      el("td", s.today.abandoned), el("td", secs(s.today.asa_s)), el("td", secs(s.today.aht_s)),
      el("td", pct(s.occupancy)), el("td", s.callbacks_pending));
    body.append(tr);
  }
}

function renderWaiting() {
  const body = $("waiting").tBodies[0];
  body.replaceChildren();
  for (const w of board.waiting) {
    const tr = el("tr");
    tr.dataset.task = w.task;
    const raise = el("button", "VIP");
    raise.className = "raise";
    raise.disabled = w.priority === "vip";
    raise.onclick = () => api("POST", `/api/v1/supervisor/tasks/${encodeURIComponent(w.task)}/priority`, { priority_class: "vip" });
    const last = el("td"); last.append(raise);
    tr.append(el("td", w.caller || "unknown"), el("td", w.service), el("td", w.priority, "priority"),
      el("td", dur(now() - w.queued_at), "wait"), last);
    body.append(tr);
  }
}

function renderAgents() {
  const body = $("agents").tBodies[0];
  if (body.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
  body.replaceChildren();
  for (const a of board.agents) {
    const tr = el("tr");
    tr.dataset.agent = a.id;
    const state = a.state.replace("_", " ") + (a.reason ? ` (${a.reason})` : "");
    const skills = el("input");
    skills.className = "skills";
    skills.value = Object.entries(a.skills).map(([k, v]) => `${k}:${v}`).join(" ");
    const actions = el("td");
    const button = (label, cls, run) => { const b = el("button", label, cls); b.onclick = run; actions.append(b); };
    button("Save skills", "save-skills", () => {
      const parsed = {};
      for (const part of skills.value.split(/[\s,]+/).filter(Boolean)) {
        const [name, level] = part.split(":"); parsed[name] = parseInt(level || "5", 10);
      }
      api("PUT", `/api/v1/supervisor/agents/${a.id}/skills`, { skills: parsed });
    });
    for (const mode of ["listen", "whisper", "barge"]) {
      button(mode, mode, () => api("POST", `/api/v1/supervisor/agents/${a.id}/spy`, { mode }));
    }
    const reason = el("select");
    for (const r of board.pause_reasons) reason.append(el("option", r));
    actions.append(reason);
    button("pause", "pause", () => api("POST", `/api/v1/supervisor/agents/${a.id}/pause`, { reason: reason.value }));
    button("log out", "logout", () => api("POST", `/api/v1/supervisor/agents/${a.id}/logout`));
    const skillCell = el("td"); skillCell.append(skills);
    tr.append(el("td", a.name), el("td", state, "state state-" + a.state), el("td", dur(now() - a.since)),
      skillCell, el("td", a.calls_handled), el("td", secs(a.aht_s)), el("td", a.ring_no_answer), actions);
    body.append(tr);
  }
}

function renderAbandoned() {
  const body = $("abandoned").tBodies[0];
  body.replaceChildren();
  for (const c of [...board.abandoned].reverse()) {
    const tr = el("tr");
    tr.append(el("td", c.caller_name || c.caller_number || "unknown"), el("td", c.service),
      el("td", new Date(c.ended_at * 1000).toLocaleTimeString()), el("td", secs(c.wait_s)));
    body.append(tr);
  }
}

function renderChart() {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  const points = board.chart;
  const slots = 96;  // 15-minute intervals in a day
  const x = (start) => pad + (start - board.day_start) / 900 / slots * (w - 2 * pad);
  const peak = Math.max(1, ...points.map((p) => p.peak_waiting));
  ctx.fillStyle = "#456";
  for (const p of points) {
    const bar = p.peak_waiting / peak * (h - 2 * pad);
    ctx.fillRect(x(p.start), h - pad - bar, Math.max(2, (w - 2 * pad) / slots - 1), bar);
  }
  ctx.strokeStyle = "#6e6"; ctx.beginPath();
  let first = true;
  for (const p of points) {
    if (p.service_level === null) continue;
    const y = h - pad - p.service_level * (h - 2 * pad);
    if (first) { ctx.moveTo(x(p.start), y); first = false; } else { ctx.lineTo(x(p.start), y); }
  }
  ctx.stroke();
  ctx.fillStyle = "#aaa"; ctx.font = "12px sans-serif";
  ctx.fillText("SL (line, 0-100%)  waiting peak (bars, max " + peak + ")", pad, 14);
}

if (token) { start(); }
