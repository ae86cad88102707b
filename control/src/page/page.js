// The control plane's page: polls the open GET /v1/* endpoints and renders them.
// Every value from the server goes on the page as text (textContent), never as
// HTML: identities and NACK errors come from sidecars.
"use strict";

const POLL_MS = 2000;
const TIMEOUT_MS = 5000;
const ENDPOINTS = ["v1/status", "v1/sidecars", "v1/overrides", "v1/migration"];

const state = {
  skew: 0,           // server clock - browser clock, in ms
  lastOk: null,      // browser time of the last full answer
  failingSince: null,
  overrides: [],
  sidecars: [],
  statusNow: null,   // the server's clock at its last /v1/status
};

const $ = (id) => document.getElementById(id);

// el("td", {className: "x", title: "y"}, "text", otherNode…)
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("data-")) node.setAttribute(k, String(v));
    else node[k] = v;
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const badge = (kind, text) => el("span", { className: "badge " + kind }, text);
const serverNow = () => Date.now() + state.skew;

function duration(ms) {
  let s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

const clock = (iso) => {
  const t = new Date(iso);
  return isNaN(t) ? String(iso) : t.toLocaleString();
};

function setRows(table, rows, columns, emptyText) {
  const body = $(table).tBodies[0];
  if (rows.length === 0) {
    body.replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: columns }, emptyText)));
  } else {
    body.replaceChildren(...rows);
  }
}

function setCard(id, text, kind) {
  const v = $(id);
  v.textContent = text;
  v.parentElement.classList.toggle("bad", kind === "bad");
  v.parentElement.classList.toggle("ok", kind === "ok");
}

// --- sidecars ---------------------------------------------------------------

// A sidecar is sent a version only when its own workload's config changed, so
// "current" means "the last version sent to it", not the global version.
const upToDate = (s) => s.acked_version != null && s.acked_version === s.sent_version;
const rejectsLatest = (s) => s.last_rejection != null && s.last_rejection.version === s.sent_version;

function sidecarRow(s) {
  const rejected = s.last_rejection;
  const ackCell = el("td", { className: "c-acked mono" });
  if (s.acked_version == null) {
    ackCell.append(el("span", { className: "muted" }, "none yet"));
  } else {
    ackCell.append(String(s.acked_version), upToDate(s) ? badge("ok", "current") : badge("warn", "behind"));
  }
  const sentCell = el("td", { className: "c-sent mono" }, s.sent_version == null ? "–" : String(s.sent_version));
  if (rejectsLatest(s)) {
    sentCell.append(badge("bad", "rejected"));
  } else if (s.sent_version != null && !upToDate(s)) {
    sentCell.append(badge("info", "awaiting answer"));
  }
  const rejCell = el("td", { className: "c-rejection" });
  if (rejected) {
    rejCell.append(el("span", { className: "mono" }, String(rejected.version)),
      rejectsLatest(s) ? badge("bad", "latest sent") : badge("info", "an earlier version"),
      el("div", { className: "error" }, rejected.error));
  } else {
    rejCell.append(el("span", { className: "muted" }, "none"));
  }
  const labels = Object.entries(s.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  return el("tr", { "data-key": s.identity, className: rejectsLatest(s) ? "problem" : "" },
    el("td", { className: "c-identity" }, el("span", { className: "mono" }, s.identity),
      el("span", { className: "sub", title: labels }, s.service == null ? "(no service)" : s.service)),
    el("td", { className: "c-connected", "data-since": s.connected_since, title: clock(s.connected_since) }),
    ackCell, sentCell, rejCell);
}

function renderSidecars(list) {
  setRows("sidecars", list.map(sidecarRow), 5, "No sidecar is connected.");
  const current = list.filter(upToDate).length;
  const rejecting = list.filter(rejectsLatest).length;
  setCard("s-sidecars", String(list.length));
  setCard("s-current", `${current} / ${list.length}`, list.length > 0 && current === list.length ? "ok" : null);
  setCard("s-rejecting", String(rejecting), rejecting > 0 ? "bad" : "ok");
}

// --- overrides --------------------------------------------------------------

function overrideRow(o) {
  const what = o.service != null ? `service ${o.service}` : `tenant ${o.tenant}`;
  const scope = o.namespace != null ? `namespace ${o.namespace}` : "all namespaces";
  return el("tr", { "data-key": o.id },
    el("td", { className: "c-target" }, what, el("span", { className: "sub" }, scope)),
    el("td", { className: "c-rate" }, `${+(o.rate * 100).toFixed(3)} %`),
    el("td", { className: "c-budget" }, o.traces_per_second == null ? "100/s (default)" : `${o.traces_per_second}/s`),
    el("td", { className: "c-remaining remaining", "data-expires": o.expires_at }),
    el("td", { className: "c-expires", title: o.expires_at }, clock(o.expires_at)),
    el("td", { className: "c-reason" }, o.reason == null ? "" : o.reason),
    el("td", { className: "c-id mono" }, o.id));
}

function renderOverrides(list) {
  setRows("overrides", list.map(overrideRow), 7, "No override is active.");
  setCard("s-overrides", String(list.length));
}

// --- boosts -----------------------------------------------------------------

// Incident boosts the sidecars reported (GET /v1/status `boosts`); the trigger
// is a sidecar's text.
function boostRow(b) {
  const key = `${b.namespace}/${b.pod}/${b.route}`;
  const ends = new Date(Date.parse(state.statusNow) + b.ends_in_seconds * 1000).toISOString();
  return el("tr", { "data-key": key },
    el("td", { className: "c-route mono" }, b.route),
    el("td", { className: "c-pod" }, el("span", { className: "mono" }, `${b.namespace}/${b.pod}`),
      el("span", { className: "sub" }, b.service == null ? "(no service)" : b.service)),
    el("td", { className: "c-trigger" }, b.trigger),
    el("td", { className: "c-rate" }, `${+(b.rate * 100).toFixed(3)} %`),
    el("td", { className: "c-ends remaining", "data-expires": ends }));
}

function renderBoosts(status) {
  const list = Array.isArray(status.boosts) ? status.boosts : [];
  setRows("boosts", list.map(boostRow), 5, "No route is boosted.");
  const off = $("boosts-off");
  off.hidden = status.boosts_enabled !== false;
  off.textContent = status.boosts_enabled === false
    ? `Boosts are off fleet-wide${status.boosts_off_since ? " since " + clock(status.boosts_off_since) : ""}` +
      " (meshtrace-control boost on turns them back on)." : "";
}

// --- migration --------------------------------------------------------------

function formats(counts) {
  const cell = el("td", { className: "formats" });
  if (!counts || counts.requests === 0) {
    cell.append(el("span", { className: "muted" }, "no requests"));
    return cell;
  }
  for (const [name, n] of Object.entries(counts.formats || {})) {
    cell.append(el("span", { className: name === "tracecontext" ? "" : "legacy" }, `${name} ${n}`));
  }
  if (counts.none > 0) cell.append(el("span", { className: "muted" }, `none ${counts.none}`));
  cell.append(el("span", { className: "sub" }, `${counts.requests} requests, ${counts.legacy} legacy`));
  return cell;
}

function stageCell(w) {
  const cell = el("td", { className: "c-stage" });
  if (w.stage == null) {
    cell.append(badge("bad", "unresolved"), el("div", { className: "error" }, w.stage_error || ""));
    return cell;
  }
  cell.append(badge(w.stage === "w3c" ? "ok" : w.stage === "dual" ? "info" : "warn", w.stage));
  for (const [stage, n] of Object.entries(w.reported_stages || {})) {
    if (stage !== w.stage) cell.append(el("span", { className: "sub" }, `${n} sidecar(s) still on ${stage}`));
  }
  return cell;
}

function migrationRow(w) {
  const name = `${w.service == null ? "(unnamed)" : w.service}.${w.namespace}`;
  const share = el("td", { className: "c-legacy" });
  if (w.legacy_share == null) {
    share.append(el("span", { className: "muted" }, "no requests"));
  } else {
    share.append(el("meter", { min: 0, max: 1, low: 0.01, high: 0.5, optimum: 0, value: w.legacy_share }),
      `${(w.legacy_share * 100).toFixed(1)} %`);
  }
  const inbound = formats(w.received && w.received.inbound);
  inbound.classList.add("c-in");
  const outbound = formats(w.received && w.received.outbound);
  outbound.classList.add("c-out");
  return el("tr", { "data-key": name },
    el("td", { className: "c-workload mono" }, name),
    stageCell(w), el("td", { className: "c-count" }, String(w.sidecars)), inbound, outbound, share);
}

function renderMigration(view) {
  const rows = (view.workloads || []).map(migrationRow);
  setRows("migration", rows, 6, "No sidecar has reported in the window.");
  $("window").textContent = `(last ${duration(view.window_seconds * 1000)})`;
  setCard("s-workloads", String(rows.length));
}

// --- time -------------------------------------------------------------------

function tick() {
  const now = serverNow();
  for (const cell of document.querySelectorAll("td[data-expires]")) {
    const left = Date.parse(cell.dataset.expires) - now;
    cell.textContent = left > 0 ? duration(left) : "expiring…";
    cell.classList.toggle("soon", left > 0 && left < 5 * 60 * 1000);
    cell.classList.toggle("over", left <= 0);
  }
  for (const cell of document.querySelectorAll("td[data-since]")) {
    cell.textContent = `for ${duration(now - Date.parse(cell.dataset.since))}`;
  }
  const updated = $("updated");
  if (state.lastOk !== null) {
    const ago = Math.round((Date.now() - state.lastOk) / 1000);
    updated.textContent = `updated ${ago < 1 ? "just now" : ago + " s ago"}`;
  }
}

// --- polling ----------------------------------------------------------------

async function get(path) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  try {
    const res = await fetch(path, { cache: "no-store", headers: { accept: "application/json" }, signal: ctl.signal });
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return await res.json();
  } catch (e) {
    throw new Error(e.name === "AbortError" ? `${path}: no answer in ${TIMEOUT_MS / 1000} s` : `${path}: ${e.message}`);
  } finally {
    clearTimeout(timer);
  }
}

function render([status, sidecars, overrides, migration]) {
  if (typeof status.now === "string") state.skew = Date.parse(status.now) - Date.now();
  state.statusNow = typeof status.now === "string" ? status.now : new Date(serverNow()).toISOString();
  setCard("s-version", String(status.version));
  const loadError = $("load-error");
  loadError.hidden = !status.last_load_error;
  loadError.textContent = status.last_load_error
    ? `The source document was rejected; still serving the last good one: ${status.last_load_error}` : "";
  renderSidecars(sidecars);
  renderOverrides(overrides);
  renderBoosts(status);
  renderMigration(migration);
}

async function poll() {
  try {
    render(await Promise.all(ENDPOINTS.map(get)));
    state.lastOk = Date.now();
    state.failingSince = null;
    $("banner").hidden = true;
    document.body.classList.remove("stale");
  } catch (e) {
    if (state.failingSince === null) state.failingSince = new Date();
    const banner = $("banner");
    banner.hidden = false;
    banner.textContent = `The control plane is not answering (since ${state.failingSince.toLocaleTimeString()}): ` +
      `${e.message}. Showing its last answer; retrying every ${POLL_MS / 1000} s.`;
    document.body.classList.add("stale");
  }
  tick();
  setTimeout(poll, POLL_MS);
}

setInterval(tick, 1000);
poll();
