// The agent desk: plain JS, no build step. Speaks the /ws/agent protocol
// (README.md, "Agent desk protocol"): hello -> welcome + snapshot or the
// missed messages; stream messages carry `seq`; commands carry an `id`
// and are re-sent with the same id after a reconnect until answered.
"use strict";

const V = 1;
const $ = (id) => document.getElementById(id);
const desk = {
  token: sessionStorage.getItem("cti.token"),
  stream: null, lastSeq: null, ws: null, retry: 500,
  agent: null, pop: null, lastCall: null, pending: new Map(), services: [], agents: [],
};
const LIVE = ["connected", "on_hold"];

function commandId() {
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
}

function send(type, fields) {
  const command = Object.assign({ v: V, type, id: commandId() }, fields || {});
  desk.pending.set(command.id, command);
  if (desk.ws && desk.ws.readyState === WebSocket.OPEN) desk.ws.send(JSON.stringify(command));
  return command.id;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws/agent`);
  desk.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ v: V, type: "hello", token: desk.token,
                             stream: desk.stream, last_seq: desk.lastSeq }));
  };
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = (event) => {
    setLink(false);
    if (event.code === 4401) { signOut("Your session ended: sign in again."); return; }
    setTimeout(connect, desk.retry);
    desk.retry = Math.min(desk.retry * 2, 8000);
  };
}

function receive(m) {
  const stream = ["snapshot", "state", "pop", "pop_update", "pop_withdrawn", "call_progress"];
  if (stream.includes(m.type)) {
    if (desk.lastSeq !== null && m.seq <= desk.lastSeq && m.type !== "snapshot") return;
    desk.lastSeq = m.seq;
  }
  switch (m.type) {
    case "welcome":
      desk.retry = 500;
      desk.stream = m.stream;
      desk.services = m.services;
      desk.agents = m.agents || [];
      setLink(true);
      $("agent-name").textContent = `${m.agent_name} (${m.agent_id})`;
      fillSelect($("pause-reason"), m.pause_reasons);
      for (const command of desk.pending.values()) desk.ws.send(JSON.stringify(command));
      break;
    case "snapshot":
      desk.agent = m.agent;
      desk.pop = m.pop;
      desk.lastCall = m.last_call;
      $("disposition-form").hidden = !m.disposition_pending;
      renderState(); renderPop();
      break;
    case "state": desk.agent = m.agent; renderState(); break;
    case "pop": desk.pop = m.pop; $("disposition-saved").textContent = ""; renderPop(); break;
    case "pop_update":
      // The same call's pop, whole, with what came later (the CRM's answer):
      // redrawn in place, what the agent is typing kept.
      if (desk.pop && desk.pop.call_id === m.pop.call_id) { desk.pop = m.pop; renderPop(); }
      break;
    case "pop_withdrawn":
      if (desk.pop && desk.pop.call_id === m.call_id) { desk.pop = null; renderPop(); }
      break;
    case "call_progress":
      if (desk.pop && desk.pop.call_id === m.call_id) { desk.pop.progress = m.progress; renderPop(); }
      if (m.progress === "connected") {
        desk.lastCall = m.call_id;
        $("disposition-form").hidden = false;
        $("disposition-saved").textContent = "";
      }
      break;
    case "ack":
      desk.pending.delete(m.command_id);
      if (m.result && m.result.recorded !== undefined) {
        $("disposition-saved").textContent = "Saved.";
        $("disposition-form").hidden = true;
      }
      if (m.result && m.result.notes !== undefined) {
        $("notes-saved").textContent = m.result.notes ? "Notes kept for the next agent." : "";
      }
      $("desk-error").textContent = "";
      break;
    case "error":
      if (m.command_id) desk.pending.delete(m.command_id);
      $("desk-error").textContent = m.message;
      break;
  }
}

// `values`: strings, or [value, label] pairs.
function fillSelect(select, values) {
  select.replaceChildren(...values.map((value) =>
    Array.isArray(value) ? new Option(value[1], value[0]) : new Option(value, value)));
}

function renderState() {
  const a = desk.agent;
  if (!a) return;
  const state = $("state");
  state.textContent = a.state.replace("_", " ");
  state.className = `state ${a.state}`;
  $("state-reason").textContent = a.reason ? `(${a.reason})` : "";
  $("ready").disabled = !["paused", "wrap_up", "logged_out"].includes(a.state);
  $("pause").disabled = a.state === "paused" && !a.reason;
  $("end-wrap-up").disabled = a.state !== "wrap_up";
  tick();
}

function tick() {
  if (!desk.agent) return;
  const seconds = Math.max(0, Math.floor(Date.now() / 1000 - desk.agent.since));
  const m = Math.floor(seconds / 60), s = seconds % 60;
  $("state-timer").textContent = `${m}:${String(s).padStart(2, "0")}`;
}

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

function renderPop() {
  const p = desk.pop;
  const card = $("pop");
  card.hidden = !p;
  if (!p) return;
  const c = p.customer;
  const crm = p.crm;
  $("pop-name").textContent = c ? c.name : crm && crm.name ? `${crm.name} (CRM)` : "Unknown caller";
  $("vip-badge").hidden = !p.vip;
  card.classList.toggle("is-vip", p.vip);
  $("progress").textContent = p.progress.replace("_", " ");
  $("pop-caller").textContent = [p.caller_number, p.caller_name].filter(Boolean).join(" - ")
    + (c ? ` (identified by ${p.identified_by})` : " - search the directory");
  $("pop-service").textContent = p.service;
  $("pop-rule").textContent = p.rule;
  $("pop-waited").textContent = `${Math.round(p.waited_s)} s`;
  $("pop-account").textContent = c && c.account ? c.account : "-";
  const ivr = p.ivr;
  $("pop-ivr").textContent = ivr ? [ivr.flow, (ivr.choices || []).join(" > "),
    ivr.verified ? "identity verified" : "not verified", ivr.language].filter(Boolean).join(", ")
    : "-";
  $("pop-notes").textContent = c ? c.notes : "";
  renderCrm(p);
  $("previous").hidden = p.previous_notes.length === 0;
  $("previous-notes").replaceChildren(...p.previous_notes.map((n) => {
    const li = document.createElement("li");
    li.textContent = `${n.agent_name} (${n.service}): ${n.notes}`;
    return li;
  }));
  $("history").tBodies[0].replaceChildren(...p.history.map((h) => {
    const tr = document.createElement("tr");
    tr.append(cell(new Date(h.at * 1000).toLocaleString()), cell(h.service),
              cell(h.agent_name || h.agent_id || "-"),
              cell(h.disposition || h.outcome), cell(h.notes));
    return tr;
  }));
  const chosen = $("transfer-to").value;
  fillSelect($("transfer-services"), desk.services.filter((s) => s !== p.service)
    .map((s) => ["service:" + s, s]));
  fillSelect($("transfer-agents"), desk.agents.map((a) => ["agent:" + a.id, `${a.name} (${a.id})`]));
  if (chosen) $("transfer-to").value = chosen;
  $("transfer-form").hidden = !LIVE.includes(p.progress);
  if ($("transfer-form").hidden) $("notes-saved").textContent = "";
}

const CRM_STATUS = { pending: "looking up...", found: "", not_found: "not in the CRM",
                     unavailable: "unavailable" };

function renderCrm(p) {
  const crm = p.crm;
  $("crm").hidden = p.crm_status === "off";
  const status = $("crm-status");
  status.textContent = CRM_STATUS[p.crm_status] || "";
  status.className = `crm-status ${p.crm_status}`;
  $("crm-facts").hidden = !crm;
  const link = $("crm-link");
  link.hidden = !(crm && crm.link);
  // Only http(s) links come from the server (checked when the CRM answered).
  if (crm && crm.link) link.href = crm.link; else link.removeAttribute("href");
  $("crm-name").textContent = crm ? crm.name || "-" : "";
  $("crm-tier").textContent = crm ? crm.tier || "-" : "";
  $("crm-account").textContent = crm ? crm.account || "-" : "";
  $("crm-segment").textContent = crm
    ? Object.entries(crm.segment).map(([k, v]) => `${k}: ${v}`).join(", ") || "-" : "";
  $("crm-notes").textContent = crm ? crm.notes : "";
  $("crm-recent").replaceChildren(...(crm ? crm.recent_contacts : []).map((r) => {
    const li = document.createElement("li");
    li.textContent = [new Date(r.at * 1000).toLocaleString(), r.channel, r.agent, r.summary]
      .filter(Boolean).join(" - ");
    return li;
  }));
}

function setLink(online) {
  $("link").textContent = online ? "online" : "offline";
  $("link").className = `link ${online ? "online" : "offline"}`;
}

function showDesk() {
  $("login").hidden = true;
  $("desk").hidden = false;
  $("who").hidden = false;
  connect();
}

function signOut(message) {
  sessionStorage.removeItem("cti.token");
  desk.token = null;
  $("desk").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    const response = await fetch("/api/v1/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("username").value, password: $("password").value }),
    });
    if (!response.ok) { $("login-error").textContent = "Wrong agent id or password."; return; }
    const body = await response.json();
    if (body.role !== "agent") { $("login-error").textContent = "This desk is for agents."; return; }
    desk.token = body.token;
    sessionStorage.setItem("cti.token", body.token);
    showDesk();
  });
  $("ready").addEventListener("click", () => send("ready"));
  $("pause").addEventListener("click", () => send("pause", { reason: $("pause-reason").value }));
  $("end-wrap-up").addEventListener("click", () => send("end_wrap_up"));
  $("disposition-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!desk.lastCall) return;
    send("disposition", { call_id: desk.lastCall, disposition: $("disposition").value,
                          notes: $("notes").value });
  });
  $("transfer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!desk.pop) return;
    const [kind, target] = $("transfer-to").value.split(/:(.*)/s);
    if (!target) return;
    send("transfer", { call_id: desk.pop.call_id, [kind]: target,
                       notes: $("transfer-notes").value });
  });
  $("save-notes").addEventListener("click", () => {
    if (desk.pop) send("notes", { call_id: desk.pop.call_id, notes: $("transfer-notes").value });
  });
  $("hangup").addEventListener("click", () => {
    if (desk.pop) send("hangup", { call_id: desk.pop.call_id });
  });
  $("escalate").addEventListener("click", () => {
    if (desk.pop) send("escalate", { call_id: desk.pop.call_id, notes: $("transfer-notes").value });
  });
  setInterval(tick, 1000);
  if (desk.token) showDesk();
});
