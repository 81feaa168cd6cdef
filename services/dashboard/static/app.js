// Executor dashboard: renders the server's JSON document (pushed by server-sent events) into the page.
// Only textContent is used for data (no HTML from data); no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const LC = window.LightweightCharts;
let charts = null;
let lastDoc = null;

function fmtTs(t) {
  if (!t) return "-";
  return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
}
function fmtDur(s) {
  if (s === null || s === undefined) return "-";
  s = Number(s);
  if (s < 60) return s.toFixed(1) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}
function num(v) { return v === null || v === undefined || v === "" ? "-" : String(v); }

function fillRows(table, rows, build) {
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    build(row, tr);
    body.appendChild(tr);
  }
}
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = num(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function renderOverview(doc) {
  $("#symbol").textContent = doc.symbol + "  (" + doc.prefix + ", " + doc.clock + " clock)";
  const hbs = doc.heartbeats || {};
  fillRows($("#processes"), Object.keys(hbs), (name, tr) => {
    const hb = hbs[name];
    tr.dataset.process = name;
    cell(tr, name);
    cell(tr, hb.up ? "alive" : "DOWN", hb.up ? "up" : "down");
    cell(tr, hb.age === null ? "never seen" : fmtDur(hb.age), "num age");
  });
  const halt = $("#halt");
  if (doc.halt) {
    halt.textContent = "HALTED: no new entries (by " + num(doc.halt.by) + ": " + num(doc.halt.reason) +
      ", since " + fmtTs(doc.halt.at) + ")";
    halt.className = "halted";
  } else {
    halt.textContent = "halt: off (new entries allowed)";
    halt.className = "up";
  }
  const gates = [];
  if (Number(doc.cooldown_left_sec) > 0) gates.push("cooldown " + fmtDur(doc.cooldown_left_sec) + " left");
  if (Number(doc.lock_left_sec) > 0) gates.push("lock " + fmtDur(doc.lock_left_sec) + " left");
  $("#gates").textContent = (gates.length ? gates.join(", ") : "no cooldown, no lock") +
    "; state version " + doc.state_version + ", " + doc.closed_count + " trades closed";
  const pr = $("#problems");
  pr.textContent = doc.problems && doc.problems.length ? "attention: " + doc.problems.join("; ") : "all good";
  pr.className = doc.problems && doc.problems.length ? "down" : "up";
}

function renderPosition(doc) {
  const p = doc.position;
  const box = $("#position");
  box.replaceChildren();
  const line = (text, cls) => { const el = document.createElement("p"); el.textContent = text;
    if (cls) el.className = cls; box.appendChild(el); return el; };
  if (!p) {
    line("flat: no position", "muted");
  } else {
    const title = line(p.trade_key + "  " + p.side.toUpperCase() + "  " + p.status);
    title.id = "position-title";
    line("entry " + num(p.avg_entry !== "0" ? p.avg_entry : p.entry_planned) + "  qty " + num(p.filled_qty) +
      "/" + num(p.qty_planned) + "  stop " + num(p.stop) + "  TP1 " + num(p.tp1) + "  TP2 " + num(p.tp2) +
      "  R " + num(p.r));
    line("break-even " + (p.be_done ? "done" : "not yet") + "  trailing " + (p.trailing ? "on" : "off") +
      "  realised " + num(p.realised_quote));
    if (p.unrealised_quote !== undefined) {
      line("unrealised " + p.unrealised_quote + " (" + p.unrealised_r + " R) at " + p.mark,
        Number(p.unrealised_quote) >= 0 ? "win" : "loss").id = "unrealised";
    }
    const cov = doc.held && Number(doc.held) > 0 ? Number(doc.covered) / Number(doc.held) : 1;
    line("stop coverage " + (cov * 100).toFixed(0) + "% of " + num(doc.held) +
      (Number(doc.unprotected_sec) > 0 ? "; UNPROTECTED for " + fmtDur(doc.unprotected_sec) : ""),
      cov < 1 ? "down" : "up").id = "coverage";
  }
  fillRows($("#legs"), p ? p.legs : [], (lg, tr) => {
    tr.dataset.leg = lg.name;
    cell(tr, lg.name);
    cell(tr, lg.status, "status");
    cell(tr, lg.qty, "num");
    cell(tr, lg.filled, "num");
    cell(tr, lg.tp, "num tp");
    cell(tr, lg.stop, "num stop");
    cell(tr, lg.exit_reason || "-");
  });
  const ex = doc.exchange || {};
  const rows = (ex.open_orders || []).map((o) => ({ ...o, missing: false }))
    .concat((ex.missing || []).map((m) => ({ client_id: m.client_id, type: "MISSING", side: "", price: "",
      stop: "", qty: "", expected_as: m.what, missing: true })));
  fillRows($("#orders"), rows, (o, tr) => {
    if (o.missing) tr.className = "missing";
    tr.dataset.clientId = o.client_id;
    for (const v of [o.client_id, o.type, o.side, o.price, o.stop, o.qty]) cell(tr, v);
    cell(tr, o.missing ? "expected: " + o.expected_as + " (missing on the exchange)"
      : (o.expected_as || (o.ours ? "UNEXPECTED" : "not ours")));
  });
  if (ex.reachable === false) {
    fillRows($("#orders"), [ex.error], (e, tr) => { tr.className = "missing"; cell(tr, "exchange unreachable: " + e); });
  }
}

function ensureCharts() {
  if (charts || !LC) return charts;
  const opts = { layout: { attributionLogo: false }, timeScale: { timeVisible: true, secondsVisible: false },
    autoSize: true };
  const price = LC.createChart($("#chart"), opts);
  const candles = price.addSeries(LC.CandlestickSeries, {});
  const stop = price.addSeries(LC.LineSeries, { color: "#c81e1e", lineWidth: 2, lineType: 1, title: "stop" });
  const markers = LC.createSeriesMarkers(candles, []);
  const eq = LC.createChart($("#equity"), opts);
  const equity = eq.addSeries(LC.LineSeries, { color: "#2962ff", lineWidth: 2, title: "equity" });
  charts = { price, candles, stop, markers, equity, lines: [] };
  return charts;
}

function minute(t) { return Math.floor(Number(t) / 60) * 60; }

function renderChart(doc) {
  const c = ensureCharts();
  const ch = doc.chart || {};
  $("#chart-trade").textContent = ch.trade_key || (ch.error ? ch.error : "none");
  if (!c) return;
  const bars = (ch.bars || []).map((b) => ({ time: b.time, open: +b.open, high: +b.high, low: +b.low, close: +b.close }));
  c.candles.setData(bars);
  for (const l of c.lines) c.candles.removePriceLine(l);
  c.lines = [];
  const colours = { entry: "#2962ff", tp1: "#137a3a", tp2: "#137a3a", "initial stop": "#e08a00" };
  for (const [name, v] of Object.entries(ch.levels || {})) {
    if (v !== null) c.lines.push(c.candles.createPriceLine({ price: +v, color: colours[name] || "#888",
      lineStyle: 2, lineWidth: 1, title: name }));
  }
  const last = bars.length ? bars[bars.length - 1].time : 0;
  const pts = new Map();
  for (const s of ch.stops || []) if (s.value !== null) pts.set(minute(s.time), +s.value);
  const stopData = [...pts.entries()].sort((a, b) => a[0] - b[0]).map(([time, value]) => ({ time, value }));
  if (stopData.length && last > stopData[stopData.length - 1].time) {
    stopData.push({ time: last, value: stopData[stopData.length - 1].value });
  }
  c.stop.setData(stopData);
  c.markers.setMarkers((ch.fills || []).map((f) => ({ time: minute(f.time),
    position: f.kind === "entry" ? "belowBar" : "aboveBar", shape: f.kind === "entry" ? "arrowUp" : "arrowDown",
    color: f.kind === "entry" ? "#2962ff" : "#137a3a", text: f.text })).sort((a, b) => a.time - b.time));
  const eqPts = new Map();
  for (const p of doc.equity || []) eqPts.set(Number(p.time), +p.value);
  c.equity.setData([...eqPts.entries()].sort((a, b) => a[0] - b[0]).map(([time, value]) => ({ time, value })));
}

function renderTrades(doc) {
  const t = doc.totals || {};
  $("#totals").textContent = t.trades ? (t.trades + " trades, " + t.wins + " won (win rate " +
    (t.win_rate * 100).toFixed(1) + "%), gross " + t.gross_pnl + ", fees " + t.fees_quote + ", net " +
    t.net_pnl + " (" + t.net_r + " R), max drawdown " + t.max_drawdown) : "no closed trade yet";
  fillRows($("#trades"), (doc.closed_trades || []).slice().reverse(), (r, tr) => {
    tr.className = Number(r.net_pnl) > 0 ? "win" : "loss";
    for (const v of [r.trade_key, r.side, fmtTs(r.closed_at), r.avg_entry, r.entry_qty, r.avg_exit, r.fees_quote,
      r.gross_pnl, r.net_pnl, r.net_r, r.reason]) cell(tr, v);
  });
}

function renderAudit(doc) {
  const f = $("#audit-filter").value.trim();
  const rows = (doc.audit || []).filter((e) => !f || e.trade_key.includes(f));
  fillRows($("#audit"), rows, (e, tr) => {
    tr.dataset.kind = e.kind;
    cell(tr, fmtTs(e.at));
    cell(tr, e.service);
    cell(tr, e.kind);
    cell(tr, e.trade_key || "-");
    cell(tr, JSON.stringify(e.data));
  });
  const ul = $("#alerts");
  ul.replaceChildren();
  for (const a of doc.alerts || []) {
    const li = document.createElement("li");
    li.className = a.severity;
    li.textContent = "[" + fmtTs(a.at) + "] " + a.severity + " " + a.check + ": " + a.message;
    ul.appendChild(li);
  }
  if (!(doc.alerts || []).length) { const li = document.createElement("li"); li.textContent = "none";
    li.className = "muted"; ul.appendChild(li); }
}

// A section is drawn again only when its part of the document changed (the page gets a push every second;
// redrawing the chart and the long tables each time would cost the host's CPU for nothing).
const drawn = {};
function changed(name, ...parts) {
  const key = JSON.stringify(parts);
  if (drawn[name] === key) return false;
  drawn[name] = key;
  return true;
}

function render(doc) {
  lastDoc = doc;
  if (!doc.redis_up) {
    $("#conn").textContent = "Redis unreachable (" + num(doc.redis_error) + ")";
    $("#conn").className = "down";
    return;
  }
  renderOverview(doc);
  if (changed("position", doc.position, doc.exchange, doc.held, doc.covered, doc.unprotected_sec)) renderPosition(doc);
  if (changed("chart", doc.chart, doc.equity)) renderChart(doc);
  if (changed("trades", doc.totals, doc.closed_trades)) renderTrades(doc);
  if (changed("audit", doc.audit, doc.alerts)) renderAudit(doc);
  $("#updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
}

function connect() {
  const es = new EventSource("/events");
  es.addEventListener("open", () => { $("#conn").textContent = "live"; $("#conn").className = "up"; });
  es.addEventListener("document", (ev) => render(JSON.parse(ev.data)));
  es.addEventListener("error", () => { $("#conn").textContent = "reconnecting…"; $("#conn").className = "down"; });
}

$("#audit-filter").addEventListener("input", () => { if (lastDoc) renderAudit(lastDoc); });
connect();
