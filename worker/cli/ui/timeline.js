// carapace ui: builds the timeline of one agent from its event log (/api/events) and status
// (/api/status), polled about once a second. Event data is untrusted (model text, tool output):
// it is only ever set as text (textContent, attribute values), never parsed as markup.
'use strict';

const TOKEN_KEY = 'carapace-ui-token';
const MAX_EVENTS = 20000;       // as many as carapace ui holds
const GAP_FOLD_MS = 30000;      // idle stretches longer than this are folded
const GAP_PX = 56;              // the width of a folded stretch
const LANE_H = 22;
const LANES = ['turns', 'model', 'tools', 'approvals', 'events', 'context'];

const state = {
  token: '',
  runId: null,
  after: 0,
  events: [],
  feed: null,         // the last /api/status answer
  pageError: '',
  selected: null,     // the key of the selected span, mark or event
  pendingEvent: 0,    // #event=SEQ: select it once it has arrived
  model: null,
  lastRenderKey: '',
};

// ---- small DOM helpers (text only) ----

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.setAttribute('class', v);
    else e.setAttribute(k, String(v));
  }
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function num(v) {
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

function pad(n, w) {
  return String(n).padStart(w || 2, '0');
}

function clock(ms, withMs) {
  if (!ms) return '';
  const d = new Date(ms);
  const s = pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds());
  return withMs ? s + '.' + pad(d.getUTCMilliseconds(), 3) : s;
}

function day(ms) {
  const d = new Date(ms);
  return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate());
}

function duration(ms) {
  if (ms === null || ms === undefined) return '';
  ms = Math.max(0, ms);
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  const s = Math.round(ms / 1000);
  if (s < 3600) return Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
  const h = Math.floor(s / 3600);
  if (h < 48) return h + 'h ' + pad(Math.floor((s % 3600) / 60)) + 'm';
  return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
}

function short(text, n) {
  text = String(text === undefined || text === null ? '' : text);
  return text.length > n ? text.slice(0, n - 1) + '\u2026' : text;
}

function phaseName(p) {
  return String(p || '').replace(/^PHASE_/, '').toLowerCase().replace(/(^|_)([a-z])/g, (m, a, b) => b.toUpperCase());
}

// Trace ids, once the worker records them (at the event's top level or in its data).
function traceOf(e) {
  const d = e.data || {};
  const traceId = e.traceId || d.traceId;
  const spanId = e.spanId || d.spanId;
  return traceId || spanId ? { traceId: traceId || '', spanId: spanId || '' } : null;
}

// ---- the token ----

// The fragment: #token=T (kept in sessionStorage, then taken out of the address bar, the
// history and any screenshot) and #event=SEQ (show that event's call or mark on load, so a
// link can point at an event).
function takeFragment() {
  const token = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  const event = /(?:^#|&)event=([0-9]+)/.exec(location.hash);
  if (event) state.pendingEvent = num(event[1]);
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(token[1]));
    history.replaceState(null, '', location.pathname + location.search + (event ? '#event=' + event[1] : ''));
  }
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

// The span or mark that holds event `seq`, else the event itself.
function keyOfEvent(seq) {
  const holds = (x) => x.events.some((e) => e.seq === seq);
  const s = state.model.spans.find((x) => x.kind !== 'turn' && holds(x)) || state.model.marks.find(holds);
  return s ? s.key : 'event:' + seq;
}

function askForToken(problem) {
  state.token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById('main').hidden = true;
  document.getElementById('token-form').hidden = false;
  document.getElementById('token-problem').textContent = problem || '';
  document.getElementById('phase').textContent = 'no token';
}

class Unauthorized extends Error {}

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: 'Bearer ' + state.token }, cache: 'no-store' });
  if (r.status === 401) throw new Unauthorized('the token was refused');
  if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
  return r.json();
}

// ---- the model: spans (a call, a wait, a turn) and marks (a moment) from the events ----

function buildModel(events) {
  const spans = [];
  const marks = [];
  const context = [];
  const openTools = new Map();      // callId -> span
  const openApprovals = new Map();  // callId -> span
  let openModel = null;
  let turn = null;
  let turnNo = 0;
  let prevTs = 0;

  const span = (kind, lane, start, e, fields) => {
    const s = Object.assign({ key: kind + ':' + e.seq, kind, lane, start, end: null, step: e.step, events: [e], outcome: 'open' }, fields);
    spans.push(s);
    return s;
  };
  const close = (s, e, outcome, end) => {
    s.end = end === undefined ? e.tsMs : end;
    s.outcome = outcome;
    s.events.push(e);
  };
  const mark = (e, kind, label, severity) => {
    marks.push({ key: 'mark:' + e.seq, kind, t: e.tsMs, label, severity: severity || 'info', events: [e], step: e.step });
  };
  // A crash or a stop cuts off whatever was in flight: those spans end where the worker
  // learned of it (the restart, the stop), flagged as cut off since how long the call really
  // ran is unknown; the call resumes (or is judged) in a new span after the restart.
  const cutOff = (e) => {
    for (const s of [...openTools.values()]) { close(s, e, 'crashed'); s.cutOff = true; openTools.delete(s.callId); }
    if (openModel) { close(openModel, e, 'crashed'); openModel.cutOff = true; openModel = null; }
  };
  const endTurn = (e, outcome) => {
    if (turn) close(turn, e, outcome);
    turn = null;
  };

  for (const e of events) {
    const d = e.data || {};
    const t = e.tsMs;
    switch (e.type) {
      case 'run_started':
        turnNo = 1;
        turn = span('turn', 'turns', t, e, { name: 'turn 1 (goal)', detail: d.goal || '' });
        break;
      case 'turn_started':
        endTurn(e, 'ended');
        turnNo += 1;
        turn = span('turn', 'turns', t, e, { name: 'turn ' + turnNo + ' from ' + (d.from || 'api'), detail: 'message #' + (d.messageSeq || '') });
        break;
      case 'message_received':
        mark(e, 'message', 'message from ' + (d.from || 'api') + ': ' + short(d.text, 80), 'info');
        break;
      case 'model_request':
        if (!openModel) openModel = span('model', 'model', t, e, { name: 'model', attempts: 0 });
        else openModel.events.push(e);
        if (num(d.contextWindow) > 0) context.push({ t, used: num(d.estimatedPromptTokens), window: num(d.contextWindow), e });
        break;
      case 'model_response': {
        if (!openModel) openModel = span('model', 'model', t - num(d.durationMs), e, { name: 'model', attempts: 0 });
        const calls = Array.isArray(d.toolCalls) ? d.toolCalls.map((c) => c && c.name).filter(Boolean) : [];
        Object.assign(openModel, {
          name: d.answeredBy ? 'model ' + d.answeredBy : 'model',
          promptTokens: num(d.promptTokens), completionTokens: num(d.completionTokens),
          firstTokenMs: d.firstTokenMs, tokensPerSecond: d.tokensPerSecond, answeredBy: d.answeredBy || '',
          finishReason: d.finishReason || '', durationMs: d.durationMs, retries: num(d.retries),
          estimated: !!d.tokensEstimated,
          detail: calls.length ? 'calls ' + calls.join(', ') : short(d.text, 120),
        });
        close(openModel, e, 'ok');
        openModel = null;
        break;
      }
      case 'model_unavailable':
        if (openModel) { openModel.attempts = num(d.attempt); openModel.events.push(e); openModel.waiting = true; }
        mark(e, 'model_unavailable', 'no model answered (attempt ' + num(d.attempt) + ', next in ' + duration(num(d.retryInMs)) + '): ' + short(d.error, 100), 'warn');
        break;
      case 'model_reply_cut':
        if (openModel) {
          openModel.finishReason = d.finishReason || '';
          openModel.completionTokens = num(d.completionTokens);
          close(openModel, e, 'cut');
          openModel = null;
        }
        mark(e, 'model_reply_cut', 'reply cut short (' + (d.finishReason || '') + ')', 'warn');
        break;
      case 'tool_intent': {
        const s = span('tool', 'tools', t, e, {
          callId: d.callId, name: d.tool || '?', effect: d.effect || '', idempotencyKey: d.idempotencyKey || '',
          retry: !!d.retry, detail: short(JSON.stringify(d.arguments === undefined ? {} : d.arguments), 160),
        });
        const before = openTools.get(d.callId);
        if (before) close(before, e, 'crashed');
        openTools.set(d.callId, s);
        break;
      }
      case 'tool_result': {
        let s = openTools.get(d.callId);
        if (!s) s = span('tool', 'tools', t - num(d.durationMs), e, { callId: d.callId, name: d.tool || '?', effect: '', idempotencyKey: '', detail: '' });
        else s.events.push(e);
        s.events = s.events.filter((x, i, all) => all.indexOf(x) === i);
        s.durationMs = d.durationMs;
        const out = d.ok ? JSON.stringify(d.output === undefined ? null : d.output) : String(d.error || '');
        s.result = short(out, 160);
        s.end = t;
        s.outcome = d.ok ? 'ok' : 'error';
        openTools.delete(d.callId);
        break;
      }
      case 'tool_outcome_unknown': {
        const s = openTools.get(d.callId);
        if (s) { close(s, e, 'unknown'); openTools.delete(d.callId); }
        mark(e, 'tool_outcome_unknown', 'outcome unknown: ' + (d.callId || '') + ' ' + (d.tool || '') + ' (cut off by a crash)', 'warn');
        break;
      }
      case 'approval_requested': {
        const s = span('approval', 'approvals', t, e, {
          callId: d.callId, name: 'approve ' + (d.tool || '?'), reason: d.reason || '',
          detail: (d.reason === 'outcome_unknown' ? 'outcome unknown after a crash: ' : 'requireApproval: ') + short(JSON.stringify(d.arguments || {}), 120),
        });
        openApprovals.set(d.callId, s);
        break;
      }
      case 'approval_decided': {
        const s = openApprovals.get(d.callId);
        if (s) {
          s.by = d.by || '';
          close(s, e, d.approved ? 'approved' : 'denied');
          openApprovals.delete(d.callId);
        }
        break;
      }
      case 'recovered': {
        const after = !!d.afterShutdown;
        cutOff(e);
        if (prevTs && t > prevTs) {
          span('down', 'events', prevTs, e, { name: after ? 'worker stopped' : 'worker down (crash)', outcome: 'down' }).end = t;
        }
        mark(e, 'recovered', after ? 'restarted after a shutdown; resumed step ' + e.step
                                   : 'recovered after a crash: step ' + e.step + (d.awaitingModel ? ' (model call asked again)' : ''), 'crash');
        break;
      }
      case 'interrupted':
        cutOff(e);
        mark(e, 'interrupted', 'interrupted on shutdown: ' + (d.what || '') + (d.inTime ? '' : ' (grace ran out)'), 'crash');
        break;
      case 'phase_changed': {
        const p = d.phase || '';
        if (['Idle', 'Succeeded', 'Failed', 'BudgetExhausted', 'Cancelled'].includes(p)) endTurn(e, p);
        if (p === 'Degraded') mark(e, 'degraded', 'Degraded: ' + short(d.reason, 160), 'crash');
        else if (['Failed', 'BudgetExhausted', 'Cancelled', 'Paused'].includes(p)) mark(e, 'phase', p + ': ' + short(d.reason, 120), 'warn');
        else if (p === 'Running' && d.reason) mark(e, 'phase', 'Running: ' + short(d.reason, 120), 'info');
        break;
      }
      case 'spec_revised':
        mark(e, 'spec_revised', 'spec revision ' + num(d.revision), 'info');
        break;
      case 'compaction_started':
      case 'context_compacted':
      case 'compaction_requested':
      case 'memory_flushed':
        mark(e, 'compaction', e.type.replace(/_/g, ' '), 'info');
        break;
      case 'budget_deferred':
        mark(e, 'budget_deferred', 'period budget used up: ' + short(d.reason, 100), 'warn');
        break;
      case 'pause_requested':
      case 'resume_requested':
      case 'cancel_requested':
      case 'history_trimmed':
      case 'forked':
        mark(e, e.type, e.type.replace(/_/g, ' '), 'info');
        break;
      default:
        break;
    }
    prevTs = t;
  }
  return { spans, marks, context };
}

// ---- time to x: busy stretches at one scale, idle ones folded to GAP_PX ----

function timeScale(spans, marks, t0, t1, width) {
  // Busy: a model or tool call in flight. Everything else longer than GAP_FOLD_MS folds.
  const busy = spans.filter((s) => s.kind === 'model' || s.kind === 'tool').map((s) => [s.start, s.end]);
  const points = [t0, t1];
  for (const s of spans) points.push(s.start, s.end);
  for (const m of marks) points.push(m.t);
  const times = [...new Set(points.filter((p) => p >= t0 && p <= t1))].sort((a, b) => a - b);
  const covered = (a, b) => busy.some(([s, e]) => s <= a && e >= b);
  const pieces = [];  // [from, to, folded]
  for (let i = 0; i + 1 < times.length; i++) {
    const a = times[i], b = times[i + 1];
    const fold = b - a > GAP_FOLD_MS && !covered(a, b);
    const last = pieces[pieces.length - 1];
    if (last && last[2] === fold && !fold) last[1] = b;
    else pieces.push([a, b, fold]);
  }
  if (!pieces.length) pieces.push([t0, t0 + 1, false]);
  const folds = pieces.filter((p) => p[2]).length;
  const openMs = pieces.filter((p) => !p[2]).reduce((sum, p) => sum + (p[1] - p[0]), 0) || 1;
  const perMs = Math.max(0, width - folds * GAP_PX) / openMs;
  let x = 0;
  for (const p of pieces) {
    p.push(x);
    x += p[2] ? GAP_PX : (p[1] - p[0]) * perMs;
    p.push(x);
  }
  const at = (t) => {
    for (const [a, b, fold, xa, xb] of pieces) {
      if (t <= b) return t <= a ? xa : xa + (xb - xa) * (t - a) / (b - a || 1);
    }
    return x;
  };
  return { at, pieces, perMs };
}

// ---- rendering ----

function colorOf(s) {
  if (s.kind === 'model') return s.outcome === 'cut' || s.outcome === 'crashed' ? '#f28e2b' : '#4e79a7';
  if (s.kind === 'tool') {
    if (s.outcome === 'ok') return '#59a14f';
    if (s.outcome === 'error') return '#e15759';
    if (s.outcome === 'open') return '#8fbf88';
    return '#f28e2b';
  }
  if (s.kind === 'approval') return s.outcome === 'denied' ? '#d4a5c9' : '#b07aa1';
  if (s.kind === 'down') return '#9c9c9c';
  return '#e9e4df';
}

function markColor(m) {
  return { crash: '#e8590c', warn: '#e0a400', info: '#76b7b2' }[m.severity] || '#76b7b2';
}

function renderTimeline(model, now) {
  const root = document.getElementById('timeline');
  const scroll = document.getElementById('timeline-scroll');
  const atRightEdge = scroll.scrollLeft + scroll.clientWidth >= scroll.scrollWidth - 4;
  clear(root);
  const labelW = 74;
  const zoom = num(document.getElementById('zoom').value) || 1;
  const width = Math.max(600, (scroll.clientWidth - 2) * zoom);
  const plotW = width - labelW - 16;
  const laneY = {};
  LANES.forEach((l, i) => { laneY[l] = 22 + i * (LANE_H + 6); });
  const ctxH = 48;
  const height = laneY.context + ctxH + 8;
  root.setAttribute('width', width);
  root.setAttribute('height', height);
  root.setAttribute('viewBox', '0 0 ' + width + ' ' + height);

  const { spans, marks, context } = model;
  const starts = spans.map((s) => s.start).concat(marks.map((m) => m.t)).filter((t) => t > 0);
  if (!starts.length) {
    root.appendChild(svg('text', { x: 10, y: 20 }, 'no events yet'));
    return;
  }
  const t0 = Math.min(...starts);
  const t1 = Math.max(now, ...spans.map((s) => s.end || 0), ...starts);
  const scale = timeScale(spans.map((s) => Object.assign({}, s, { end: s.end || now })), marks, t0, t1, plotW);
  const X = (t) => labelW + scale.at(t);

  // Lanes and their labels.
  for (const l of LANES) {
    const h = l === 'context' ? ctxH : LANE_H;
    root.appendChild(svg('rect', { x: labelW, y: laneY[l], width: plotW, height: h, fill: '#fafbfc', stroke: '#eef0f2' }));
    root.appendChild(svg('text', { x: 6, y: laneY[l] + 14, class: 'lane-label' }, l));
  }

  // The axis: ticks in each busy stretch, folded stretches marked with their length.
  const axis = svg('g', { class: 'axis' });
  root.appendChild(axis);
  let lastLabelX = -1e9;
  for (const [a, b, fold, xa, xb] of scale.pieces) {
    if (fold) {
      const g = svg('g', { class: 'gap' });
      g.appendChild(svg('rect', { x: labelW + xa, y: 16, width: xb - xa, height: height - 20, fill: 'url(#fold)', opacity: 0.5 }));
      g.appendChild(svg('text', { x: labelW + xa + 3, y: 12 }, '\u22ef ' + duration(b - a)));
      axis.appendChild(g);
      continue;
    }
    const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 900000, 1800000, 3600000];
    const want = 110 / Math.max(scale.perMs, 1e-9);
    const step = steps.find((s) => s >= want) || 3600000;
    for (let t = Math.ceil(a / step) * step; t <= b; t += step) {
      const x = X(t);
      if (x - lastLabelX < 90) continue;
      lastLabelX = x;
      axis.appendChild(svg('line', { x1: x, x2: x, y1: 16, y2: height - 4, stroke: '#eef0f2' }));
      axis.appendChild(svg('text', { x: x + 2, y: 12 }, clock(t, step < 1000)));
    }
  }
  const defs = svg('defs');
  const pat = svg('pattern', { id: 'fold', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
  pat.appendChild(svg('rect', { width: 3, height: 6, fill: '#d0d7de' }));
  defs.appendChild(pat);
  root.insertBefore(defs, root.firstChild);

  // Spans: a bar each, labelled when there is room.
  for (const s of spans) {
    const x = X(s.start);
    const w = Math.max(3, X(s.end || now) - x);
    const y = laneY[s.lane] + 3;
    const g = svg('g', { 'data-kind': s.kind, 'data-outcome': s.outcome, 'data-key': s.key });
    const r = svg('rect', { x, y, width: w, height: LANE_H - 6, rx: 2, fill: colorOf(s) });
    if (state.selected === s.key) r.setAttribute('class', 'selected');
    if (s.outcome === 'open') r.setAttribute('opacity', 0.7);
    g.appendChild(r);
    g.appendChild(svg('title', {}, spanTitle(s, now)));
    const label = s.kind === 'tool' ? s.name : s.kind === 'model' ? 'step ' + s.step : s.name;
    if (w > label.length * 6 + 6) {
      g.appendChild(svg('text', { x: x + 3, y: y + 12, class: s.kind === 'turn' ? 'bar-label dark' : 'bar-label' }, label));
    }
    g.addEventListener('click', () => select(s.key));
    root.appendChild(g);
  }

  // Marks: a line through every lane and a diamond on the events lane.
  for (const m of marks) {
    const x = X(m.t);
    const y = laneY.events + LANE_H / 2;
    const g = svg('g', { 'data-kind': 'mark', 'data-mark': m.kind, 'data-key': m.key });
    if (m.severity === 'crash') {
      g.appendChild(svg('line', { x1: x, x2: x, y1: 16, y2: laneY.context, stroke: markColor(m), 'stroke-width': 2, 'stroke-dasharray': '4 2' }));
    }
    const size = m.severity === 'crash' ? 7 : 5;
    const d = svg('path', { d: 'M' + x + ' ' + (y - size) + ' l' + size + ' ' + size + ' l-' + size + ' ' + size + ' l-' + size + ' -' + size + ' z',
                            fill: markColor(m), stroke: state.selected === m.key ? '#000' : '#fff' });
    g.appendChild(d);
    g.appendChild(svg('title', {}, clock(m.t, true) + '  ' + m.label));
    g.addEventListener('click', () => select(m.key));
    root.appendChild(g);
  }

  // Context fill: each model request's estimated prompt over the window, 0..100%.
  const top = laneY.context, bottom = laneY.context + ctxH;
  if (context.length) {
    let path = '';
    for (const c of context) {
      const y = bottom - Math.min(1, c.used / c.window) * ctxH;
      path += (path ? ' L' : 'M') + X(c.t).toFixed(1) + ' ' + y.toFixed(1);
    }
    const last = context[context.length - 1];
    path += ' L' + X(t1).toFixed(1) + ' ' + (bottom - Math.min(1, last.used / last.window) * ctxH).toFixed(1);
    root.appendChild(svg('path', { d: path + ' L' + X(t1).toFixed(1) + ' ' + bottom + ' L' + X(context[0].t).toFixed(1) + ' ' + bottom + ' z',
                                   fill: 'rgba(78,121,167,0.18)', stroke: 'none' }));
    root.appendChild(svg('path', { d: path, fill: 'none', stroke: '#4e79a7', 'stroke-width': 1.5, 'data-kind': 'context' }));
    for (const c of context) {
      const dot = svg('circle', { cx: X(c.t), cy: bottom - Math.min(1, c.used / c.window) * ctxH, r: 2.5, fill: '#4e79a7' });
      dot.appendChild(svg('title', {}, clock(c.t, true) + '  prompt ~' + c.used + ' of ' + c.window + ' tokens (' + Math.round(100 * c.used / c.window) + '%)'));
      root.appendChild(dot);
    }
    root.appendChild(svg('text', { x: labelW + plotW - 4, y: top + 11, 'text-anchor': 'end', class: 'lane-label' },
      Math.round(100 * last.used / last.window) + '% of ' + last.window));
  } else {
    root.appendChild(svg('text', { x: labelW + 6, y: top + 16, class: 'lane-label' }, 'no model request yet'));
  }
  root.appendChild(svg('line', { x1: labelW, x2: labelW + plotW, y1: top, y2: top, stroke: '#e15759', 'stroke-dasharray': '2 3' }));

  if (atRightEdge) scroll.scrollLeft = scroll.scrollWidth;
}

function spanTitle(s, now) {
  const lines = [clock(s.start, true) + ' \u2192 ' + (s.end ? clock(s.end, true) : 'now') + '  (' +
    (s.cutOff ? 'cut off; how long it ran is unknown' : duration((s.end || now) - s.start)) + ')'];
  if (s.kind === 'model') {
    lines.push('step ' + s.step + ' ' + (s.answeredBy || 'model') + '  ' + s.outcome);
    if (s.promptTokens !== undefined) lines.push('tokens ' + s.promptTokens + ' in, ' + s.completionTokens + ' out' + (s.estimated ? ' (estimated)' : ''));
    if (s.firstTokenMs !== undefined) lines.push('first token ' + s.firstTokenMs + ' ms' + (s.tokensPerSecond ? ', ' + s.tokensPerSecond + ' tokens/s' : ''));
    if (s.finishReason) lines.push('finish ' + s.finishReason);
  } else if (s.kind === 'tool') {
    lines.push(s.callId + ' ' + s.name + '  ' + s.outcome + (s.effect ? '  [' + s.effect + ']' : ''));
  } else {
    lines.push(s.name + '  ' + s.outcome);
  }
  if (s.detail) lines.push(s.detail);
  return lines.join('\n');
}

function callRow(s, now) {
  const dur = s.end ? s.end - s.start : now - s.start;
  let what = s.name, tokens = '', detail = s.detail || '';
  if (s.kind === 'model') {
    what = 'model ' + (s.answeredBy || '');
    if (s.promptTokens !== undefined) tokens = s.promptTokens + ' + ' + s.completionTokens + (s.estimated ? ' ~' : '');
    const figs = [];
    if (s.firstTokenMs !== undefined) figs.push('first token ' + s.firstTokenMs + ' ms');
    if (s.tokensPerSecond) figs.push(s.tokensPerSecond + ' tok/s');
    if (s.finishReason) figs.push('finish ' + s.finishReason);
    if (s.retries) figs.push(s.retries + ' retries');
    if (s.attempts) figs.push(s.attempts + ' failed attempts');
    detail = figs.concat(detail ? [detail] : []).join(' \u00b7 ');
  } else if (s.kind === 'tool') {
    what = s.name + ' ' + (s.callId || '');
    const bits = [];
    if (s.effect) bits.push(s.effect);
    if (s.retry) bits.push('re-run');
    if (s.idempotencyKey) bits.push('key ' + s.idempotencyKey.slice(0, 12));
    bits.push(s.detail || '');
    if (s.result) bits.push('\u2192 ' + s.result);
    detail = bits.filter(Boolean).join(' \u00b7 ');
  } else if (s.kind === 'approval') {
    what = s.name + ' ' + (s.callId || '');
    detail = (s.by ? 'by ' + s.by + ' \u00b7 ' : '') + detail;
  }
  const outcome = s.outcome === 'open' ? (s.kind === 'approval' ? 'waiting' : 'running') : s.outcome;
  const tr = el('tr', { 'data-key': s.key, 'data-kind': s.kind },
    el('td', {}, String(s.step || '')),
    el('td', { class: 'mono' }, clock(s.start, true)),
    el('td', {}, what),
    el('td', { class: 'mono' }, s.cutOff ? '? (cut off)' : duration(dur) + (s.end ? '' : ' \u2026')),
    el('td', { class: 'mono' }, tokens),
    el('td', { class: s.outcome }, outcome),
    el('td', { class: 'what', title: detail }, detail));
  if (state.selected === s.key) tr.classList.add('selected');
  tr.addEventListener('click', () => select(s.key));
  return tr;
}

function renderCalls(model, now) {
  const body = document.querySelector('#calls tbody');
  clear(body);
  const rows = model.spans.filter((s) => s.kind !== 'turn').slice(-500).reverse();
  for (const s of rows) {
    if (s.kind === 'down') continue;
    body.appendChild(callRow(s, now));
  }
  for (const m of model.marks) {
    if (m.severity !== 'crash') continue;
    // Crashes and recoveries also get a row, in time order among the calls.
    const tr = el('tr', { 'data-key': m.key, class: 'mark-' + m.kind },
      el('td', {}, String(m.step || '')), el('td', { class: 'mono' }, clock(m.t, true)), el('td', {}, m.kind),
      el('td', {}, ''), el('td', {}, ''), el('td', { class: 'crashed' }, m.kind), el('td', { class: 'what' }, m.label));
    tr.addEventListener('click', () => select(m.key));
    const after = [...body.children].find((r) => {
      const s = model.spans.find((x) => x.key === r.getAttribute('data-key'));
      return s && s.start <= m.t;
    });
    body.insertBefore(tr, after || null);
  }
}

function describe(e) {
  const d = e.data || {};
  switch (e.type) {
    case 'run_started': return 'goal: ' + short(d.goal, 200);
    case 'message_received': return 'from ' + (d.from || 'api') + ': ' + short(d.text, 200);
    case 'turn_started': return 'message #' + (d.messageSeq || '') + ' from ' + (d.from || 'api');
    case 'model_request': return (d.estimatedPromptTokens || 0) + ' of ' + (d.contextWindow || '?') + ' tokens, ' + (d.messages || 0) + ' messages';
    case 'model_response': {
      const calls = Array.isArray(d.toolCalls) ? d.toolCalls.map((c) => c && c.name).filter(Boolean) : [];
      return (d.answeredBy || '') + ' ' + duration(num(d.durationMs)) + ', ' + num(d.promptTokens) + '+' + num(d.completionTokens) + ' tokens, ' +
        (calls.length ? 'calls ' + calls.join(', ') : '"' + short(d.text, 160) + '"');
    }
    case 'tool_intent': return (d.callId || '') + ' ' + (d.tool || '') + ' ' + short(JSON.stringify(d.arguments || {}), 160) + ' [' + (d.effect || '') + (d.retry ? ', re-run' : '') + ']';
    case 'tool_result': return (d.callId || '') + ' ' + (d.tool || '') + ' ' + (d.ok ? 'ok' : 'error') + ' ' + duration(d.durationMs) + ' ' +
      short(d.ok ? JSON.stringify(d.output === undefined ? null : d.output) : d.error, 160);
    case 'approval_requested': return (d.callId || '') + ' ' + (d.tool || '') + ' (' + (d.reason || '') + ')';
    case 'approval_decided': return (d.callId || '') + ' ' + (d.approved ? 'approved' : 'denied') + ' by ' + (d.by || '?');
    case 'phase_changed': return '\u2192 ' + (d.phase || '') + (d.reason ? ' (' + short(d.reason, 200) + ')' : '');
    case 'recovered': return d.afterShutdown ? 'restarted after a shutdown' : 'restarted after a crash' + (d.awaitingModel ? '; the model call is asked again' : '');
    case 'interrupted': return (d.what || '') + (d.inTime ? '' : ' (grace ran out)');
    case 'model_unavailable': return 'attempt ' + num(d.attempt) + ', next in ' + duration(num(d.retryInMs)) + ': ' + short(d.error, 200);
    case 'model_reply_cut': return 'finish ' + (d.finishReason || '') + ' after ' + num(d.completionTokens) + ' tokens';
    case 'spec_revised': return 'revision ' + num(d.revision);
    default: return short(JSON.stringify(d), 200);
  }
}

function renderEvents() {
  const body = document.querySelector('#events tbody');
  clear(body);
  const filter = document.getElementById('filter').value.trim().toLowerCase();
  let shown = 0;
  for (let i = state.events.length - 1; i >= 0 && shown < 1000; i--) {
    const e = state.events[i];
    const what = describe(e);
    if (filter && !(e.type + ' ' + what).toLowerCase().includes(filter)) continue;
    const tr = el('tr', { 'data-seq': e.seq, class: 'mark-' + (e.type === 'recovered' || e.type === 'interrupted' ? e.type : e.type === 'phase_changed' && (e.data || {}).phase === 'Degraded' ? 'degraded' : 'none') },
      el('td', { class: 'mono' }, String(e.seq)), el('td', { class: 'mono' }, clock(e.tsMs, true)),
      el('td', {}, String(e.step)), el('td', {}, e.type), el('td', { class: 'what', title: what }, what));
    if (state.selected === 'event:' + e.seq) tr.classList.add('selected');
    tr.addEventListener('click', () => select('event:' + e.seq));
    body.appendChild(tr);
    shown++;
  }
  const first = state.events.length ? state.events[0].seq : 0;
  document.getElementById('held').textContent = state.events.length + ' events held' +
    (first > 1 ? ' (from #' + first + '; older ones are in the worker\u2019s log: carapace events --from N)' : '');
}

function fact(label, value, extra) {
  const f = el('span', { class: 'fact' }, el('span', { class: 'muted' }, label + ' '), el('b', {}, value));
  if (extra) f.appendChild(extra);
  return f;
}

function renderStatus(now) {
  const feed = state.feed || {};
  const s = feed.status || {};
  const phase = phaseName(s.phase) || 'unknown';
  document.getElementById('agent-name').textContent = s.name ? (s.namespace ? s.namespace + '/' : '') + s.name : 'timeline';
  const ph = document.getElementById('phase');
  ph.textContent = phase;
  ph.className = 'phase ' + phase;
  document.getElementById('phase-reason').textContent = short(s.reason || '', 200);
  document.title = (s.name || 'carapace') + ' \u00b7 ' + phase;

  const facts = document.getElementById('facts');
  clear(facts);
  facts.appendChild(fact('step', String(num(s.step))));
  facts.appendChild(fact('turns', String(num(s.turns))));
  facts.appendChild(fact('inbox', String(num(s.inboxDepth))));
  if (s.waitingFor) facts.appendChild(fact('waiting for', s.waitingFor + (s.waitingDetail ? ' (' + short(s.waitingDetail, 80) + ')' : '') +
    (num(s.nextTryAtMs) ? ', next try ' + clock(num(s.nextTryAtMs)) : '')));
  if (s.currentCallId) facts.appendChild(fact('running', s.currentCallId + ' ' + (s.currentTool || '')));
  const b = s.budget || {};
  const budget = (used, max) => num(max) > 0 ? num(used) + '/' + num(max) : String(num(used));
  facts.appendChild(fact('budget', 'steps ' + budget(b.steps, b.maxSteps) + ', tokens ' + budget(b.tokens, b.maxTokens) + ', tool calls ' + budget(b.toolCalls, b.maxToolCalls)));
  if (num(s.contextWindow) > 0) {
    const ratio = num(s.lastPromptTokens) / num(s.contextWindow);
    const bar = el('span', { class: 'fill' + (ratio > 0.9 ? ' full' : ratio > 0.7 ? ' high' : '') }, el('span', {}));
    bar.firstChild.style.width = Math.min(100, Math.round(ratio * 100)) + '%';
    facts.appendChild(fact('context', Math.round(ratio * 100) + '% of ' + num(s.contextWindow) + ' ', bar));
    if (num(s.compactions)) facts.appendChild(fact('compactions', String(num(s.compactions))));
  }
  facts.appendChild(fact('revision', String(num(s.revision))));
  if (num(s.idleSinceMs) && phase === 'Idle') facts.appendChild(fact('idle for', duration(now - num(s.idleSinceMs))));
  const lastEvent = state.events.length ? state.events[state.events.length - 1] : null;
  if (lastEvent) facts.appendChild(fact('last event', '#' + lastEvent.seq + ' ' + duration(now - lastEvent.tsMs) + ' ago'));
  if (s.result) facts.appendChild(fact('result', short(s.result, 120)));

  // What needs a person, with the command that does it.
  const attention = document.getElementById('attention');
  clear(attention);
  const worker = feed.worker || 'ADDR';
  for (const w of s.waiting || []) {
    attention.appendChild(el('div', {}, 'waiting for a person: ' + w.callId + ' ' + w.tool + ' ' + short(w.argumentsJson, 120) + ' (' + w.reason + ')  \u2014  ',
      el('code', {}, 'carapace approve --worker ' + worker + ' --call ' + w.callId + ' [--deny]')));
  }
  if (phase === 'Degraded') {
    attention.appendChild(el('div', {}, 'held: ' + short(s.degradedCause || s.reason, 240) + '  \u2014  ', el('code', {}, 'carapace resume --worker ' + worker)));
  }
  if (s.waitingFor === 'ModelUnavailable') {
    attention.appendChild(el('div', {}, 'no model service answers: ' + short(s.waitingDetail, 200)));
  }
  attention.hidden = !attention.firstChild;

  const conn = document.getElementById('connection');
  const problems = [state.pageError, feed.connected === false && feed.error ? 'worker ' + worker + ': ' + feed.error : ''].filter(Boolean);
  conn.textContent = problems.length ? problems.join('; ') + ' (retrying)'
    : 'live from worker ' + worker + (num(feed.statusAtMs) ? ', status of ' + clock(num(feed.statusAtMs)) + ' UTC' : '') + ' \u00b7 ' + day(now);
  conn.className = 'connection' + (problems.length ? ' bad' : '');
}

// ---- details of the selected span, mark or event ----

function select(key) {
  state.selected = key;
  renderDetails();
  state.lastRenderKey = '';
  render();
}

function renderDetails() {
  const box = document.getElementById('details');
  clear(box);
  const key = state.selected;
  if (!key || !state.model) return;
  let title = '', fields = [], events = [];
  const s = state.model.spans.find((x) => x.key === key);
  const m = state.model.marks.find((x) => x.key === key);
  if (s) {
    title = s.kind === 'tool' ? 'tool call ' + (s.callId || '') + ' ' + s.name : s.kind === 'model' ? 'model call, step ' + s.step : s.name;
    fields = [['started', day(s.start) + ' ' + clock(s.start, true)], ['ended', s.end ? clock(s.end, true) : 'not yet'],
      ['duration', duration((s.end || Date.now()) - s.start)], ['outcome', s.outcome]];
    if (s.kind === 'model') {
      fields.push(['answered by', s.answeredBy || ''], ['prompt tokens', s.promptTokens], ['completion tokens', s.completionTokens],
        ['first token', s.firstTokenMs === undefined ? '' : s.firstTokenMs + ' ms'], ['tokens/s', s.tokensPerSecond], ['finish', s.finishReason],
        ['retries', s.retries], ['failed attempts', s.attempts]);
    } else if (s.kind === 'tool') {
      fields.push(['effect', s.effect], ['idempotency key', s.idempotencyKey], ['re-run', s.retry ? 'yes' : ''], ['result', s.result]);
    } else if (s.kind === 'approval') {
      fields.push(['reason', s.reason], ['decided by', s.by || '']);
    }
    events = s.events;
  } else if (m) {
    title = m.label;
    fields = [['at', day(m.t) + ' ' + clock(m.t, true)], ['step', m.step]];
    events = m.events;
  } else if (key.startsWith('event:')) {
    const seq = num(key.slice(6));
    const e = state.events.find((x) => x.seq === seq);
    if (e) { title = '#' + e.seq + ' ' + e.type; events = [e]; }
  }
  // The trace the call belongs to, when the worker records one (to look it up in a tracing UI).
  const traced = events.map(traceOf).find(Boolean);
  if (traced) fields.push(['trace id', traced.traceId], ['span id', traced.spanId]);
  box.appendChild(el('h3', {}, title));
  const dl = el('dl');
  for (const [k, v] of fields) {
    if (v === undefined || v === null || v === '' || v === 0) continue;
    dl.appendChild(el('dt', {}, k));
    dl.appendChild(el('dd', {}, String(v)));
  }
  box.appendChild(dl);
  for (const e of events) {
    const trace = traceOf(e);
    box.appendChild(el('div', { class: 'muted' }, '#' + e.seq + ' ' + e.type + ' at ' + clock(e.tsMs, true) +
      (trace ? '  trace ' + trace.traceId + (trace.spanId ? ' span ' + trace.spanId : '') : '')));
    box.appendChild(el('pre', {}, JSON.stringify(e, null, 2)));
  }
}

// ---- the loop ----

function render() {
  const now = Date.now();
  const key = state.events.length + ':' + (state.events.length ? state.events[state.events.length - 1].seq : 0) + ':' + JSON.stringify(state.feed) + state.pageError;
  const live = state.model && state.model.spans.some((s) => !s.end);
  if (key === state.lastRenderKey && !live && now - (state.renderedAt || 0) < 5000) return;
  state.lastRenderKey = key;
  state.renderedAt = now;
  state.model = buildModel(state.events);
  renderStatus(now);
  renderTimeline(state.model, now);
  renderCalls(state.model, now);
  renderEvents();
  window.carapaceTimeline = { events: state.events.length, lastSeq: state.after, renders: ((window.carapaceTimeline || {}).renders || 0) + 1 };
}

async function poll() {
  if (!state.token) return;
  try {
    for (let more = true; more;) {
      const r = await api('/api/events?after=' + state.after);
      if (r.runId !== state.runId) {
        // A new run (or the first answer): start the picture over.
        const restart = state.runId !== null && state.after > 0;
        state.runId = r.runId;
        state.events = [];
        state.selected = null;
        if (restart) { state.after = 0; continue; }
      }
      for (const e of r.events) {
        if (e.seq > state.after) { state.events.push(e); state.after = e.seq; }
      }
      if (state.events.length > MAX_EVENTS) state.events.splice(0, state.events.length - MAX_EVENTS);
      more = r.more;
    }
    state.feed = await api('/api/status');
    state.pageError = '';
  } catch (err) {
    if (err instanceof Unauthorized) {
      askForToken('carapace ui refused the token: it must be the worker\u2019s control token.');
      return;
    }
    state.pageError = 'cannot reach carapace ui: ' + err.message;
  }
  render();
  if (state.pendingEvent && state.events.some((e) => e.seq === state.pendingEvent)) {
    select(keyOfEvent(state.pendingEvent));
    state.pendingEvent = 0;
  }
  setTimeout(poll, 1000);
}

function start() {
  document.getElementById('main').hidden = false;
  document.getElementById('token-form').hidden = true;
  poll();
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = document.getElementById('token-input').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    state.token = t;
    document.getElementById('token-input').value = '';
    start();
  });
  document.getElementById('filter').addEventListener('input', () => renderEvents());
  document.getElementById('zoom').addEventListener('input', () => { state.lastRenderKey = ''; render(); });
  window.addEventListener('resize', () => { state.lastRenderKey = ''; render(); });
  state.token = takeFragment();
  if (state.token) start();
  else askForToken('');
});
