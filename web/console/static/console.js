// CareCall nurse console: audio that follows the transcript, and live calls with red-flag alerts.
// Caller words only ever go into textContent: never innerHTML.
"use strict";

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function fmtSecs(s) {
  const m = Math.floor(s / 60);
  return m + ":" + (s - m * 60).toFixed(1).padStart(4, "0");
}

// --- call page: highlight the turn being played; click a time to seek --------------------------
function setupPlayer() {
  const player = document.getElementById("player");
  const turns = Array.from(document.querySelectorAll("#transcript .turn"));
  if (!turns.length) return;
  const spans = turns.map((t) => [parseFloat(t.dataset.start), parseFloat(t.dataset.end), t]);
  let current = null;
  function follow() {
    const now = player.currentTime;
    let found = null;
    for (const [start, end, node] of spans) {
      if (now >= start && now < Math.max(end, start + 0.05)) found = node;
    }
    if (found === current) return;
    if (current) current.classList.remove("playing");
    current = found;
    if (current) {
      current.classList.add("playing");
      current.scrollIntoView({ block: "nearest" });
    }
  }
  function seek(seconds) {
    if (!player) return;
    player.currentTime = seconds;
    player.play().catch(() => {});
    follow();
  }
  if (player) {
    player.addEventListener("timeupdate", follow);
    player.addEventListener("seeked", follow);
  }
  document.querySelectorAll("[data-seek]").forEach((b) =>
    b.addEventListener("click", () => seek(parseFloat(b.dataset.seek))));
  document.querySelectorAll("[data-seek-turn]").forEach((a) =>
    a.addEventListener("click", (ev) => {
      const turn = document.getElementById("turn-" + a.dataset.seekTurn);
      if (turn && player) { ev.preventDefault(); seek(parseFloat(turn.dataset.start)); }
    }));
}

// --- live feed: every console page listens, so a red flag alerts wherever the nurse is ---------
const live = new Map();

function alertRedFlag(msg) {
  const box = document.getElementById("alerts");
  if (!box) return;
  const item = el("div", "alert");
  item.appendChild(el("strong", null, "Red flag: "));
  item.appendChild(el("span", null, (msg.flags || []).join(", ") + (msg.reason ? " (" + msg.reason + ")" : "")));
  const link = el("a", null, " open live call");
  link.href = "/console/live#call-" + encodeURIComponent(msg.call_id);
  item.appendChild(link);
  const take = el("a", "take-over", " take over");  // the call's page, where the nurse can step in
  take.href = "/console/calls/" + encodeURIComponent(msg.call_id) + "#takeover";
  item.appendChild(take);
  const close = el("button", "dismiss", "dismiss");
  close.type = "button";
  close.addEventListener("click", () => item.remove());
  item.appendChild(close);
  box.appendChild(item);
}

function renderLive() {
  const count = document.getElementById("live-count");
  if (count) count.textContent = live.size ? String(live.size) : "";
  const root = document.getElementById("live-calls");
  if (!root) return;
  root.replaceChildren();
  if (!live.size) { root.appendChild(el("p", "empty", "No calls in progress.")); return; }
  for (const call of live.values()) {
    const card = el("article", "live-call" + (call.red_flags.length ? " red" : ""));
    card.id = "call-" + call.call_id;
    const head = el("header");
    head.appendChild(el("strong", null, (call.mode === "followup" ? "Follow-up" : "Triage") + " · " + call.language + " · " + call.channel));
    head.appendChild(el("span", "state", call.state));
    if (call.disposition) head.appendChild(el("span", "disp disp-" + call.disposition, call.disposition));
    card.appendChild(head);
    if (call.red_flags.length) card.appendChild(el("p", "flag", "⚑ " + call.red_flags.join(", ")));
    const list = el("ol", "transcript");
    for (const t of call.turns) {
      const li = el("li", "turn speaker-" + t.speaker);
      li.appendChild(el("span", "seek", fmtSecs(t.start_s)));
      li.appendChild(el("span", "speaker", t.speaker === "caller" ? "Caller" : t.speaker === "nurse" ? "Nurse" : "CareCall"));
      li.appendChild(el("span", "text", t.text));
      list.appendChild(li);
    }
    if (call.partial) {
      const li = el("li", "turn partial speaker-caller");
      li.appendChild(el("span", "speaker", "Caller …"));
      li.appendChild(el("span", "text", call.partial));
      list.appendChild(li);
    }
    card.appendChild(list);
    root.appendChild(card);
  }
}

function onLive(type, msg) {
  const call = msg.call_id ? live.get(msg.call_id) : null;
  switch (type) {
    case "snapshot":
      live.clear();
      for (const c of msg.calls) live.set(c.call_id, c);
      break;
    case "call_started": live.set(msg.call.call_id, msg.call); break;
    case "state": if (call) call.state = msg.state; break;
    case "partial": if (call) call.partial = msg.text; break;
    case "turn": if (call) { call.partial = ""; call.turns.push(msg.turn); } break;
    case "disposition": if (call) call.disposition = msg.disposition; break;
    case "red_flag":
      if (call) for (const f of msg.flags) if (!call.red_flags.includes(f)) call.red_flags.push(f);
      alertRedFlag(msg);
      break;
    case "call_ended": live.delete(msg.call_id); break;
  }
  renderLive();
}

function setupLive() {
  const url = document.body.dataset.liveUrl;
  if (!url || !window.EventSource) return;
  const source = new EventSource(url);
  for (const type of ["snapshot", "call_started", "state", "partial", "turn", "disposition", "red_flag", "call_ended"]) {
    source.addEventListener(type, (ev) => onLive(type, JSON.parse(ev.data)));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupPlayer();
  setupLive();
});
