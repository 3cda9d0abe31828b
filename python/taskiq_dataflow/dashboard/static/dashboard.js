/* taskiq-dataflow dashboard: vanilla JS, no framework, no network beyond its own server.
 *
 * Live: one EventSource on /api/events (runs + the selected run's snapshot, pushed by the
 * server at most every 0.5 s). Offline: window.DATAFLOW_REPORT holds the runs and snapshots.
 * The server aggregates (a 1M-task run arrives as a few dozen names and <= 2000 bars), and the
 * page draws at most one frame per animation frame and a few frames a second. All text from
 * the run goes through textContent, never innerHTML: task names and tracebacks are data. */
(function () {
  "use strict";

  var MIN_FRAME_MS = 250; // at most 4 renders a second, whatever the event rate
  var MAX_ROWS = 500; // table rows drawn (workers, streams) beyond which a note says how many
  var STATES = ["done", "cached", "running", "failed", "skipped"];
  var STATE_LABELS = { done: "done", cached: "cached", running: "running", failed: "failed",
    skipped: "skipped", waiting: "waiting" };

  var report = window.DATAFLOW_REPORT || null;
  var state = {
    runs: [],
    snapshots: {}, // run_id -> Snapshot
    received: {}, // run_id -> performance.now() when its snapshot came
    selected: null, // the run shown
    pinned: false, // the user chose a run (else the newest is followed)
    source: null,
    connected: false,
  };

  // -- small helpers -------------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function num(v) { return typeof v === "number" && isFinite(v) ? v : 0; }

  // toLocaleString is slow enough to show on a frame of a thousand numbers
  function fmtInt(v) {
    var n = Math.round(num(v));
    var text = String(Math.abs(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return n < 0 ? "-" + text : text;
  }

  function fmtDuration(s) {
    if (typeof s !== "number" || !isFinite(s) || s < 0) return "–";
    if (s < 1) return (s * 1000).toFixed(0) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m < 60) return m + "m " + (sec < 10 ? "0" : "") + sec + "s";
    var h = Math.floor(m / 60), mm = m % 60;
    return h + "h " + (mm < 10 ? "0" : "") + mm + "m";
  }

  function fmtRate(r) {
    if (typeof r !== "number" || !isFinite(r)) return "–";
    if (r >= 10000) return (r / 1000).toFixed(0) + "k/s";
    if (r >= 1000) return (r / 1000).toFixed(1) + "k/s";
    if (r >= 10) return r.toFixed(0) + "/s";
    return r.toFixed(1) + "/s";
  }

  function fmtClock(epoch) {
    if (typeof epoch !== "number") return "";
    var d = new Date(epoch * 1000);
    return d.toLocaleTimeString("en-GB", { hour12: false });
  }

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var f = v / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  // A colour per task name, from a stable hash (FNV-1a) of the name into a palette of
  // distinct colours; a name whose slot another name of the same run holds takes the next free
  // one (names in sorted order, so the same names always get the same colours). Past the
  // palette, the hash picks a hue.
  // the first ten are told apart most easily: a run of up to ten names uses only those
  var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
    "#ff9da7", "#2f4b7c", "#b6992d", "#8cd17d", "#d37295", "#a0cbe8", "#c85200", "#6b4c9a",
    "#499894"];
  var FIRST = 10;
  var colours = {}, coloursKey = null;

  function hashOf(name) {
    var h = 2166136261;
    for (var i = 0; i < name.length; i++) {
      h ^= name.charCodeAt(i);
      h = Math.imul(h, 16777619) >>> 0;
    }
    return h;
  }

  function assignColours(names) {
    var sorted = names.map(String).sort();
    var key = sorted.join("\u0000");
    if (key === coloursKey) return;
    coloursKey = key;
    colours = {};
    var taken = {};
    var slots = sorted.length <= FIRST ? FIRST : PALETTE.length;
    sorted.forEach(function (name, n) {
      var h = hashOf(name);
      if (n >= slots) {
        colours[name] = "hsl(" + (h % 360) + ", 55%, " + (45 + (h >>> 9) % 3 * 8) + "%)";
        return;
      }
      var slot = h % slots;
      while (taken[slot]) slot = (slot + 1) % slots;
      taken[slot] = true;
      colours[name] = PALETTE[slot];
    });
  }

  function colourOf(name) {
    var c = colours[name];
    if (c) return c;
    return PALETTE[hashOf(String(name)) % PALETTE.length];
  }

  // -- data in -------------------------------------------------------------------------------

  function setRuns(runs) {
    state.runs = Array.isArray(runs) ? runs : [];
    // the newest run is followed until the user picks one (a pick is kept even while the
    // server does not list that run: it may be about to start)
    if (!state.pinned) state.selected = state.runs.length ? state.runs[0].run_id : null;
    renderSelect();
    schedule();
  }

  function setSnapshot(snap) {
    if (!snap || typeof snap.run_id !== "string") return;
    state.snapshots[snap.run_id] = snap;
    state.received[snap.run_id] = performance.now();
    if (state.selected === null) state.selected = snap.run_id;
    schedule();
  }

  function hashRun() {
    var m = /(?:^#|&)run=([^&]*)/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function choose(runId, fromHash) {
    if (!runId || runId === state.selected && state.pinned) return;
    state.selected = runId;
    state.pinned = true;
    if (!fromHash) history.replaceState(null, "", "#run=" + encodeURIComponent(runId));
    renderSelect();
    if (!report) connect();
    schedule(true);
  }

  function connect() {
    if (state.source) state.source.close();
    var url = "/api/events" + (state.pinned && state.selected
      ? "?run=" + encodeURIComponent(state.selected) : "");
    var source = new EventSource(url);
    state.source = source;
    source.addEventListener("open", function () { setConn("live", "live"); });
    source.addEventListener("error", function () {
      // EventSource retries by itself; the page only says so
      setConn(source.readyState === EventSource.CLOSED ? "lost" : "", "reconnecting…");
    });
    source.addEventListener("runs", function (e) {
      var data = parse(e.data);
      if (data) setRuns(data.runs);
    });
    source.addEventListener("snapshot", function (e) {
      var data = parse(e.data);
      if (data) setSnapshot(data);
    });
  }

  function parse(text) {
    try { return JSON.parse(text); } catch (err) {
      console.warn("dashboard: an event that is not JSON was ignored");
      return null;
    }
  }

  function setConn(cls, text) {
    var c = $("conn");
    c.className = "conn " + cls;
    c.textContent = text;
  }

  // -- rendering, throttled ------------------------------------------------------------------

  var frameAsked = false, lastFrame = 0, timer = null, force = false;

  function schedule(all) {
    if (all) force = true;
    if (frameAsked) return;
    var wait = MIN_FRAME_MS - (performance.now() - lastFrame);
    frameAsked = true;
    if (wait > 0) {
      timer = setTimeout(function () { timer = null; requestAnimationFrame(frame); }, wait);
    } else {
      requestAnimationFrame(frame);
    }
  }

  function frame() {
    frameAsked = false;
    lastFrame = performance.now();
    var all = force;
    force = false;
    render(all);
  }

  var shown = { runId: null, snap: null };

  function render(all) {
    var snap = state.selected ? state.snapshots[state.selected] : null;
    $("empty").hidden = !!snap || state.runs.length > 0;
    $("views").hidden = !snap && state.runs.length === 0;
    if (!snap) {
      renderHeaderFromSummary();
      return;
    }
    var changedRun = shown.runId !== snap.run_id;
    var fresh = all || changedRun || shown.snap !== snap;
    shown.runId = snap.run_id;
    renderHeader(snap);
    if (!fresh) return;
    shown.snap = snap;
    assignColours(namesOf(snap));
    renderProgress(snap);
    renderThroughput(snap);
    renderStream(snap);
    renderGraph(snap, changedRun);
    renderWorkers(snap);
    renderFailures(snap, changedRun);
    renderStreams(snap);
    renderLogs(snap, changedRun);
  }

  function namesOf(snap) {
    var seen = {}, out = [];
    (snap.by_name || []).concat((snap.graph || {}).nodes || []).forEach(function (n) {
      if (!seen[n.name]) { seen[n.name] = true; out.push(String(n.name)); }
    });
    return out;
  }

  function renderSelect() {
    var select = $("run-select");
    var runs = state.runs.slice();
    if (state.selected && !runs.some(function (r) { return r.run_id === state.selected; })) {
      runs.push({ run_id: state.selected, status: "?", label: null });
    }
    var key = JSON.stringify(runs.map(function (r) {
      return [r.run_id, r.status, r.label, r.done, r.total];
    }));
    if (select.dataset.key !== key) {
      select.dataset.key = key;
      clear(select);
      runs.forEach(function (r) {
        var name = (r.label ? r.label + " · " : "") + r.run_id;
        var when = r.started_at ? " · " + fmtClock(r.started_at) : "";
        var opt = el("option", null, name + " — " + r.status + when);
        opt.value = r.run_id;
        select.appendChild(opt);
      });
    }
    if (state.selected) select.value = state.selected;
    select.disabled = runs.length < 2;
  }

  function renderHeaderFromSummary() {
    var run = state.runs.filter(function (r) { return r.run_id === state.selected; })[0];
    setStatus(run ? run.status : "waiting");
    $("run-done").textContent = fmtInt(run ? run.done : 0);
    $("run-total").textContent = fmtInt(run ? run.total : 0);
    $("run-failed").textContent = fmtInt(run ? run.failed : 0);
  }

  function setStatus(status) {
    var pill = $("run-status");
    pill.textContent = status;
    pill.className = "pill " + status;
  }

  function elapsedOf(snap) {
    var e = num(snap.elapsed);
    // between two snapshots a running run's clock goes on in the page
    if (!report && snap.status === "running" && state.received[snap.run_id]) {
      e += (performance.now() - state.received[snap.run_id]) / 1000;
    }
    return e;
  }

  function renderHeader(snap) {
    var c = snap.counts || {};
    setStatus(snap.status);
    $("run-elapsed").textContent = fmtDuration(elapsedOf(snap));
    $("run-done").textContent = fmtInt(num(c.done) + num(c.cached));
    $("run-total").textContent = fmtInt(snap.total);
    $("run-running").textContent = fmtInt(c.running);
    $("run-failed").textContent = fmtInt(c.failed);
    var tp = snap.throughput || [];
    var rate = snap.status === "running" && tp.length ? num(tp[tp.length - 1][1])
      : num(snap.elapsed) > 0 ? (num(c.done) + num(c.failed)) / num(snap.elapsed) : NaN;
    $("run-rate").textContent = fmtRate(rate);
    document.title = (snap.status === "running" ? "▶ " : "") + fmtInt(num(c.done) + num(c.cached))
      + "/" + fmtInt(snap.total) + " · taskiq-dataflow";
    var overall = $("overall");
    var total = Math.max(1, num(snap.total));
    if (!overall.firstChild) {
      STATES.forEach(function (s) { overall.appendChild(el("span", "s-" + s)); });
    }
    STATES.forEach(function (s, i) {
      overall.childNodes[i].style.width = (100 * num(c[s]) / total) + "%";
    });
  }

  // -- progress per task name (as Dask's progress bars per prefix) ----------------------------

  var progressRows = {}; // name -> {row parts}

  function renderProgress(snap) {
    var box = $("progress");
    var legend = $("progress-legend");
    if (!legend.firstChild) {
      STATES.concat(["waiting"]).forEach(function (s) {
        var item = el("span");
        item.appendChild(el("i", "s-" + s));
        item.appendChild(document.createTextNode(STATE_LABELS[s]));
        legend.appendChild(item);
      });
    }
    var names = snap.by_name || [];
    var keep = {};
    var order = [];
    names.forEach(function (n) {
      var name = String(n.name);
      keep[name] = true;
      var row = progressRows[name];
      if (!row) {
        row = { label: el("div", "name"), bar: el("div", "bar"), count: el("div", "count"),
          segs: {}, swatch: el("i", "swatch") };
        row.label.appendChild(row.swatch);
        row.label.appendChild(document.createTextNode(name));
        row.label.title = name;
        row.bar.dataset.testid = "progress-row";
        row.bar.dataset.name = name;
        STATES.forEach(function (s) {
          var seg = el("span", "s-" + s);
          row.segs[s] = seg;
          row.bar.appendChild(seg);
        });
        row.done = el("b");
        row.count.appendChild(row.done);
        row.rest = document.createTextNode("");
        row.count.appendChild(row.rest);
        progressRows[name] = row;
      }
      row.swatch.style.background = colourOf(name); // its bars' colour in the task stream
      var total = Math.max(1, num(n.total));
      var tip = [];
      STATES.forEach(function (s) {
        row.segs[s].style.width = (100 * num(n[s]) / total) + "%";
        // one failure in 20,000 still shows
        row.segs[s].style.minWidth = s === "failed" && num(n[s]) ? "3px" : "";
        if (num(n[s])) tip.push(fmtInt(n[s]) + " " + s);
      });
      tip.push(fmtInt(n.waiting) + " waiting");
      if (typeof n.mean_duration === "number") tip.push("mean " + fmtDuration(n.mean_duration));
      row.bar.title = name + ": " + tip.join(", ");
      row.done.textContent = fmtInt(num(n.done) + num(n.cached));
      var extra = " / " + fmtInt(n.total);
      if (num(n.failed)) extra += " · " + fmtInt(n.failed) + " failed";
      row.rest.textContent = extra;
      order.push(row);
    });
    for (var name in progressRows) if (!keep[name]) delete progressRows[name];
    // re-append in the server's order (moves nodes, creates none)
    var same = box.childNodes.length === order.length * 3;
    for (var i = 0; same && i < order.length; i++) same = box.childNodes[i * 3] === order[i].label;
    if (!same) {
      clear(box);
      order.forEach(function (row) {
        box.appendChild(row.label);
        box.appendChild(row.bar);
        box.appendChild(row.count);
      });
      if (!order.length) box.appendChild(el("div", "none", "No tasks yet."));
    }
  }

  // -- canvases -------------------------------------------------------------------------------

  function sizeCanvas(canvas, cssHeight) {
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth || canvas.parentNode.clientWidth || 600;
    if (cssHeight) canvas.style.height = cssHeight + "px";
    var height = canvas.clientHeight || cssHeight || 200;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    return { ctx: ctx, w: width, h: height };
  }

  function timeTicks(t0, t1, pixels) {
    var span = Math.max(t1 - t0, 1e-3);
    var step = niceCeil(span / Math.max(2, Math.floor(pixels / 90)));
    var ticks = [];
    for (var t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) ticks.push(t);
    return { ticks: ticks, step: step };
  }

  function fmtTick(t, step) {
    if (step >= 60) return t ? fmtDuration(t) : "0";
    return t.toFixed(step < 0.1 ? 2 : step < 1 ? 1 : 0) + " s";
  }

  // Lanes x time: one row per worker (or slot), a bar per task coloured by its name.
  var streamGeom = null;

  function renderStream(snap) {
    var canvas = $("task-stream");
    var stream = snap.stream || { lanes: [], bars: [], window: [0, 0] };
    var lanes = stream.lanes || [];
    var bars = stream.bars || [];
    var laneH = lanes.length ? Math.max(3, Math.min(22, Math.floor(420 / lanes.length))) : 22;
    var height = Math.max(140, Math.min(460, lanes.length * laneH + 28));
    var g = sizeCanvas(canvas, height);
    var ctx = g.ctx;
    var labels = laneH >= 10;
    var left = labels ? Math.min(170, Math.max(60, longestLabel(ctx, lanes) + 14)) : 8;
    var top = 4, bottom = g.h - 22, right = g.w - 8;
    var win = stream.window || [0, 0];
    var t0 = num(win[0]), t1 = num(win[1]);
    if (bars.length) {
      if (!(t1 > t0)) {
        t0 = Infinity; t1 = -Infinity;
        bars.forEach(function (b) { t0 = Math.min(t0, num(b.start)); t1 = Math.max(t1, num(b.end)); });
      }
    }
    if (!(t1 > t0)) t1 = t0 + 1;
    laneH = lanes.length ? (bottom - top) / lanes.length : laneH;
    var xOf = function (t) { return left + (t - t0) / (t1 - t0) * (right - left); };
    streamGeom = { left: left, right: right, top: top, laneH: laneH, t0: t0, t1: t1, bars: bars,
      lanes: lanes, xOf: xOf };
    $("stream-note").textContent = lanes.length
      ? fmtInt(lanes.length) + " lanes · " + fmtInt(bars.length) + " most recent tasks"
      : "";
    ctx.font = "11px system-ui, sans-serif";
    // lanes
    for (var i = 0; i < lanes.length; i++) {
      if (i % 2 === 0 && laneH >= 4) { // stripes on thin lanes are only noise
        ctx.fillStyle = "#f6f7f9";
        ctx.fillRect(left, top + i * laneH, right - left, laneH);
      }
      if (labels) {
        ctx.fillStyle = "#6b7280";
        ctx.textBaseline = "middle";
        ctx.textAlign = "right";
        ctx.fillText(clip(ctx, String(lanes[i]), left - 10), left - 6, top + (i + 0.5) * laneH);
      }
    }
    // time axis
    var axis = timeTicks(t0, t1, right - left);
    ctx.strokeStyle = "#e3e6eb";
    ctx.fillStyle = "#6b7280";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    axis.ticks.forEach(function (t) {
      var x = Math.round(xOf(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
      ctx.fillText(fmtTick(t, axis.step), x, bottom + 5);
    });
    if (!bars.length) {
      ctx.fillStyle = "#6b7280";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("No task has finished yet.", (left + right) / 2, (top + bottom) / 2);
      return;
    }
    // bars, batched by colour; failed ones outlined after. A worker runs several tasks at once
    // on its slots: the bars of one lane that overlap in time are packed into sub-rows
    var pad = laneH > 6 ? 1.5 : 0.5;
    var byColour = {};
    var failed = [];
    var perLane = {};
    bars.forEach(function (b) {
      var lane = b.lane | 0;
      if (lane >= 0 && lane < lanes.length) (perLane[lane] = perLane[lane] || []).push(b);
    });
    var hits = [];
    var maxSub = Math.max(1, Math.min(8, Math.floor((laneH - 2 * pad) / 3)));
    Object.keys(perLane).forEach(function (key) {
      var lane = +key;
      var list = perLane[key].slice().sort(function (a, b) { return num(a.start) - num(b.start); });
      var ends = [], rowOf = [];
      list.forEach(function (b, i) {
        var start = num(b.start), k = -1;
        for (var j = 0; j < ends.length; j++) if (ends[j] <= start + 1e-9) { k = j; break; }
        if (k < 0 && ends.length < maxSub) { k = ends.length; ends.push(0); }
        if (k < 0) { k = 0; for (j = 1; j < ends.length; j++) if (ends[j] < ends[k]) k = j; }
        ends[k] = Math.max(ends[k], num(b.end));
        rowOf[i] = k;
      });
      var h = (laneH - 2 * pad) / ends.length, gap = ends.length > 1 ? 1 : 0;
      list.forEach(function (b, i) {
        var x0 = xOf(Math.max(t0, num(b.start))), x1 = xOf(Math.min(t1, num(b.end)));
        var w = Math.max(1, x1 - x0 - (x1 - x0 > 3 ? 1 : 0)); // a hair between neighbours
        var rect = [x0, top + lane * laneH + pad + rowOf[i] * h, w, Math.max(1, h - gap)];
        var colour = colourOf(String(b.name));
        (byColour[colour] = byColour[colour] || []).push(rect);
        if (b.status === "failed") failed.push(rect);
        hits.push({ rect: rect, bar: b });
      });
    });
    streamGeom.hits = hits;
    for (var colour in byColour) {
      ctx.fillStyle = colour;
      ctx.beginPath();
      byColour[colour].forEach(function (r) { ctx.rect(r[0], r[1], r[2], r[3]); });
      ctx.fill();
    }
    if (failed.length) {
      ctx.strokeStyle = "#b3261e";
      ctx.lineWidth = 2;
      failed.forEach(function (r) { ctx.strokeRect(r[0], r[1], Math.max(2, r[2]), r[3]); });
      ctx.lineWidth = 1;
    }
  }

  function longestLabel(ctx, lanes) {
    ctx.font = "11px system-ui, sans-serif";
    var w = 0;
    for (var i = 0; i < lanes.length && i < 200; i++) w = Math.max(w, ctx.measureText(String(lanes[i])).width);
    return w;
  }

  function clip(ctx, text, width) {
    if (ctx.measureText(text).width <= width) return text;
    while (text.length > 1 && ctx.measureText("…" + text).width > width) text = text.slice(1);
    return "…" + text;
  }

  function streamHover(ev) {
    var tip = $("stream-tip");
    var g = streamGeom;
    if (!g || !g.hits || !g.hits.length) { tip.hidden = true; return; }
    var box = ev.currentTarget.getBoundingClientRect();
    var x = ev.clientX - box.left, y = ev.clientY - box.top;
    var hit = null;
    var hits = g.hits || [];
    for (var i = hits.length - 1; i >= 0; i--) {
      var r = hits[i].rect;
      if (x >= r[0] - 2 && x <= r[0] + r[2] + 2 && y >= r[1] && y <= r[1] + r[3]) { hit = hits[i].bar; break; }
    }
    if (!hit) { tip.hidden = true; return; }
    tip.textContent = hit.name + " · " + fmtDuration(num(hit.end) - num(hit.start))
      + (hit.status === "failed" ? " · failed" : "") + " · " + g.lanes[hit.lane | 0];
    tip.hidden = false;
    tip.style.left = Math.min(x + 12, box.width - tip.offsetWidth - 4) + "px";
    tip.style.top = (y + 14) + "px";
  }

  // Tasks completed per second over time.
  function renderThroughput(snap) {
    var canvas = $("throughput");
    var g = sizeCanvas(canvas);
    var ctx = g.ctx;
    var pts = (snap.throughput || []).filter(function (p) { return Array.isArray(p) && p.length >= 2; });
    var left = 46, right = g.w - 10, top = 10, bottom = g.h - 22;
    ctx.font = "11px system-ui, sans-serif";
    var tMax = Math.max(num(snap.elapsed), pts.length ? num(pts[pts.length - 1][0]) : 0, 1);
    var tMin = pts.length ? Math.min(0, num(pts[0][0])) : 0;
    var peak = Math.max.apply(null, [1].concat(pts.map(function (p) { return num(p[1]); })));
    var yStep = niceCeil(peak * 1.05 / 4);
    var yMax = yStep * Math.max(1, Math.ceil(peak * 1.05 / yStep));
    var xOf = function (t) { return left + (t - tMin) / (tMax - tMin) * (right - left); };
    var yOf = function (v) { return bottom - v / yMax * (bottom - top); };
    ctx.strokeStyle = "#e3e6eb";
    ctx.fillStyle = "#6b7280";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (var v = 0; v <= yMax + 1e-9; v += yStep) {
      var y = Math.round(yOf(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
      ctx.fillText(shortNum(v), left - 6, y);
    }
    var axis = timeTicks(tMin, tMax, right - left);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    axis.ticks.forEach(function (t) { ctx.fillText(fmtTick(t, axis.step), xOf(t), bottom + 5); });
    if (!pts.length) {
      ctx.textBaseline = "middle";
      ctx.fillText("No completions yet.", (left + right) / 2, (top + bottom) / 2);
      return;
    }
    ctx.beginPath();
    ctx.moveTo(xOf(num(pts[0][0])), bottom);
    pts.forEach(function (p) { ctx.lineTo(xOf(num(p[0])), yOf(num(p[1]))); });
    ctx.lineTo(xOf(num(pts[pts.length - 1][0])), bottom);
    ctx.closePath();
    ctx.fillStyle = "rgba(74, 108, 247, 0.14)";
    ctx.fill();
    ctx.beginPath();
    pts.forEach(function (p, j) {
      var x = xOf(num(p[0])), y = yOf(num(p[1]));
      if (j) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.strokeStyle = "#4a6cf7";
    ctx.lineWidth = 1.75;
    ctx.stroke();
    ctx.lineWidth = 1;
  }

  function shortNum(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(v % 1e6 ? 1 : 0) + "M";
    if (v >= 1e3) return (v / 1e3).toFixed(v % 1e3 ? 1 : 0) + "k";
    return v % 1 ? v.toFixed(1) : String(v);
  }

  // -- the DAG collapsed by task name ---------------------------------------------------------

  var NODE_W = 168, NODE_H = 40, GAP_X = 64, GAP_Y = 16, MAX_NODES = 400, MIN_SCALE = 0.6;
  var graphState = { key: null, nodes: {} };

  function renderGraph(snap, changedRun) {
    var box = $("graph");
    var graph = snap.graph || { nodes: [], edges: [], inputs: [] };
    var nodes = (graph.nodes || []).slice(0, MAX_NODES);
    var inputs = (graph.inputs || []).slice(0, MAX_NODES);
    var key = JSON.stringify([nodes.map(function (n) { return n.name; }), graph.edges, inputs]);
    if (changedRun || key !== graphState.key) {
      graphState.key = key;
      graphState.nodes = drawGraph(box, nodes, graph.edges || [], inputs);
      var hidden = (graph.nodes || []).length - nodes.length;
      $("graph-note").textContent = fmtInt(nodes.length) + " task names"
        + (inputs.length ? " · " + fmtInt(inputs.length) + " inputs" : "")
        + (hidden > 0 ? " · " + fmtInt(hidden) + " more not drawn" : "");
    }
    // the node's own progress and count, updated in place, only what changed: on a graph of
    // 200 names these writes are most of a frame
    var byName = {};
    (snap.by_name || []).forEach(function (n) { byName[n.name] = n; });
    nodes.forEach(function (n) {
      var parts = graphState.nodes["t:" + n.name];
      if (!parts) return;
      var p = byName[n.name];
      var total = Math.max(1, num(p ? p.total : n.count));
      var done = p ? num(p.done) + num(p.cached) : 0;
      var failed = p ? num(p.failed) : 0;
      var wDone = Math.round((NODE_W - 2) * done / total * 2) / 2;
      var wFailed = failed ? Math.max(2, Math.round((NODE_W - 2) * failed / total * 2) / 2) : 0;
      if (parts.wDone !== wDone) {
        parts.wDone = wDone;
        parts.done.setAttribute("width", String(wDone));
        parts.failed.setAttribute("x", String(1 + wDone));
      }
      if (parts.wFailed !== wFailed) {
        parts.wFailed = wFailed;
        parts.failed.setAttribute("width", String(wFailed));
        parts.outline.style.display = failed ? "" : "none";
      }
      var text = p ? fmtInt(done) + " done" : "";
      if (parts.text !== text) {
        parts.text = text;
        parts.count.textContent = text;
      }
    });
  }

  function layers(names, edges) {
    // longest path from a source, by Kahn's order; nodes left over (a cycle) go last
    var indeg = {}, out = {}, layer = {};
    names.forEach(function (n) { indeg[n] = 0; out[n] = []; layer[n] = 0; });
    edges.forEach(function (e) {
      if (e.source in indeg && e.target in indeg && e.source !== e.target) {
        out[e.source].push(e.target);
        indeg[e.target]++;
      }
    });
    var queue = names.filter(function (n) { return indeg[n] === 0; });
    var seen = 0;
    while (queue.length) {
      var n = queue.shift();
      seen++;
      out[n].forEach(function (m) {
        layer[m] = Math.max(layer[m], layer[n] + 1);
        if (--indeg[m] === 0) queue.push(m);
      });
    }
    if (seen < names.length) {
      var maxL = 0;
      names.forEach(function (n) { maxL = Math.max(maxL, layer[n]); });
      names.forEach(function (n) { if (indeg[n] > 0) layer[n] = maxL + 1; });
    }
    return layer;
  }

  function drawGraph(box, nodes, edges, inputs) {
    clear(box);
    if (!nodes.length) {
      box.appendChild(el("div", "none", "No graph yet."));
      return {};
    }
    var names = nodes.map(function (n) { return String(n.name); });
    var layer = layers(names, edges);
    var shift = inputs.length ? 1 : 0;
    var items = []; // {id, label, count, layer, input}
    nodes.forEach(function (n) {
      items.push({ id: "t:" + n.name, label: String(n.name), count: n.count, layer: layer[n.name] + shift });
    });
    inputs.forEach(function (inp) {
      var targets = (inp.targets || []).filter(function (t) { return t in layer; });
      var first = targets.length ? Math.min.apply(null, targets.map(function (t) { return layer[t]; })) : 0;
      items.push({ id: "i:" + inp.key, label: String(inp.key), layer: first, input: true });
    });
    var links = [];
    edges.forEach(function (e) {
      if (e.source in layer && e.target in layer) {
        links.push({ from: "t:" + e.source, to: "t:" + e.target, count: e.count });
      }
    });
    inputs.forEach(function (inp) {
      (inp.targets || []).forEach(function (t) {
        if (t in layer) links.push({ from: "i:" + inp.key, to: "t:" + t, input: true });
      });
    });
    // columns, ordered by the mean position of their neighbours (two sweeps)
    var cols = [];
    var byId = {};
    items.forEach(function (it) {
      (cols[it.layer] = cols[it.layer] || []).push(it);
      byId[it.id] = it;
    });
    cols = cols.filter(Boolean);
    cols.forEach(function (col) { col.forEach(function (it, i) { it.pos = i; }); });
    var preds = {}, succs = {};
    links.forEach(function (l) {
      (preds[l.to] = preds[l.to] || []).push(l.from);
      (succs[l.from] = succs[l.from] || []).push(l.to);
    });
    function sweep(list, neighbours) {
      list.forEach(function (col) {
        col.forEach(function (it) {
          var ns = neighbours[it.id] || [];
          it.key = ns.length
            ? ns.reduce(function (s, id) { return s + byId[id].pos; }, 0) / ns.length : it.pos;
        });
        col.sort(function (a, b) { return a.key - b.key; });
        col.forEach(function (it, i) { it.pos = i; });
      });
    }
    for (var round = 0; round < 3; round++) {
      sweep(cols.slice(1), preds);
      sweep(cols.slice(0, -1).reverse(), succs);
    }
    var tallest = Math.max.apply(null, cols.map(function (c) { return c.length; }));
    var width = cols.length * NODE_W + (cols.length - 1) * GAP_X + 20;
    var height = tallest * NODE_H + (tallest - 1) * GAP_Y + 20;
    cols.forEach(function (col, c) {
      var offset = (height - 20 - (col.length * NODE_H + (col.length - 1) * GAP_Y)) / 2;
      col.forEach(function (it, i) {
        it.x = 10 + c * (NODE_W + GAP_X);
        it.y = 10 + offset + i * (NODE_H + GAP_Y);
      });
    });
    var root = svg("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height,
      role: "img", "aria-label": "task graph collapsed by task name" });
    var maxCount = Math.max.apply(null, [1].concat(links.map(function (l) { return num(l.count); })));
    var edgeLayer = svg("g", {}), labelLayer = svg("g", {}), nodeLayer = svg("g", {});
    root.appendChild(edgeLayer); root.appendChild(nodeLayer); root.appendChild(labelLayer);
    links.forEach(function (l) {
      var a = byId[l.from], b = byId[l.to];
      var x0 = a.x + NODE_W, y0 = a.y + NODE_H / 2, x1 = b.x, y1 = b.y + NODE_H / 2;
      if (b.x <= a.x) { x0 = a.x + NODE_W / 2; x1 = b.x + NODE_W / 2; } // same column (a cycle)
      var mx = (x0 + x1) / 2;
      var path = svg("path", { d: "M" + x0 + "," + y0 + " C" + mx + "," + y0 + " " + mx + "," + y1
        + " " + x1 + "," + y1, class: "edge" + (l.input ? " from-input" : ""),
        "stroke-width": String(l.input ? 1.2 : 1 + 2.5 * Math.log(1 + num(l.count)) / Math.log(1 + maxCount)),
        "marker-end": "url(#arrow)" });
      var title = svg("title", {});
      title.textContent = a.label + " → " + b.label + (l.count ? ": " + fmtInt(l.count) + " edges" : "");
      path.appendChild(title);
      edgeLayer.appendChild(path);
      if (l.count && num(l.count) > 1) {
        // an edge past a column would put its count on a node of that column: near its source
        var long = b.x - a.x > NODE_W + GAP_X;
        var tx = long ? x0 + GAP_X / 2 : mx, ty = long ? y0 - 5 : (y0 + y1) / 2 - 3;
        var bg = svg("text", { x: tx, y: ty, "text-anchor": "middle", class: "edge-count-bg" });
        bg.textContent = fmtInt(l.count);
        var label = svg("text", { x: tx, y: ty, "text-anchor": "middle", class: "edge-count" });
        label.textContent = fmtInt(l.count);
        labelLayer.appendChild(bg); labelLayer.appendChild(label);
      }
    });
    var defs = svg("defs", {});
    var marker = svg("marker", { id: "arrow", viewBox: "0 0 8 8", refX: "8", refY: "4",
      markerWidth: "8", markerHeight: "8", markerUnits: "userSpaceOnUse", orient: "auto" });
    marker.appendChild(svg("path", { d: "M0,0 L8,4 L0,8 z", fill: "#9aa1ad" }));
    defs.appendChild(marker);
    root.insertBefore(defs, root.firstChild);
    // what changes as the run goes on (progress, done counts, a failure's outline) is drawn
    // on an overlay of its own, so a snapshot repaints that and not the edges and boxes below
    var overlay = svg("svg", { class: "overlay", viewBox: "0 0 " + width + " " + height,
      "aria-hidden": "true" });
    var parts = {};
    items.forEach(function (it) {
      var at = "translate(" + it.x + "," + it.y + ")";
      var gNode = svg("g", { class: "node" + (it.input ? " input" : ""), transform: at,
        "data-name": it.label });
      gNode.appendChild(svg("rect", { class: "box", width: NODE_W, height: NODE_H, rx: it.input ? 16 : 5 }));
      var title = svg("title", {});
      title.textContent = (it.input ? "input " : "") + it.label
        + (it.input ? "" : " \u00d7" + fmtInt(it.count));
      gNode.appendChild(title);
      if (!it.input) {
        gNode.appendChild(svg("rect", { x: 6, y: 6, width: 4, height: NODE_H - 12, rx: 1,
          fill: colourOf(it.label) }));
      }
      var text = svg("text", { x: it.input ? NODE_W / 2 : 16, y: it.input ? NODE_H / 2 + 4 : 17,
        "text-anchor": it.input ? "middle" : "start" });
      text.textContent = truncate(it.label, it.input ? 22 : 19);
      gNode.appendChild(text);
      if (!it.input) {
        var total = svg("text", { x: 16, y: 31, class: "count" });
        total.textContent = "\u00d7" + fmtInt(it.count);
        gNode.appendChild(total);
        var live = svg("g", { transform: at, "data-name": it.label });
        var outline = svg("rect", { class: "failed-outline", width: NODE_W, height: NODE_H, rx: 5 });
        outline.style.display = "none";
        var count = svg("text", { x: NODE_W - 8, y: 31, "text-anchor": "end", class: "count" });
        var done = svg("rect", { x: 1, y: NODE_H - 4, width: 0, height: 3, class: "bar-done" });
        var failed = svg("rect", { x: 1, y: NODE_H - 4, width: 0, height: 3, class: "bar-failed" });
        [outline, count, done, failed].forEach(function (n) { live.appendChild(n); });
        overlay.appendChild(live);
        parts[it.id] = { count: count, done: done, failed: failed, outline: outline };
      }
      nodeLayer.appendChild(gNode);
    });
    // shrunk to fit the card, but not below a readable size: a long chain of names scrolls
    var stack = el("div", "graph-layers");
    var room = Math.max(200, box.clientWidth - 2);
    stack.style.width = Math.round(width * Math.max(MIN_SCALE, Math.min(1, room / width))) + "px";
    stack.appendChild(root);
    stack.appendChild(overlay);
    box.appendChild(stack);
    return parts;
  }

  function truncate(text, n) { return text.length > n ? text.slice(0, n - 1) + "…" : text; }

  // -- tables ---------------------------------------------------------------------------------

  function table(box, heads, rows, emptyText) {
    var key = JSON.stringify([heads, rows.slice(0, MAX_ROWS).map(function (r) { return r.cells; }),
      rows.length]);
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    clear(box);
    if (!rows.length) {
      box.appendChild(el("div", "none", emptyText));
      return;
    }
    var t = el("table"), thead = el("thead"), tr = el("tr");
    heads.forEach(function (h) { tr.appendChild(el("th", h.cls || null, h.label)); });
    thead.appendChild(tr);
    t.appendChild(thead);
    var body = el("tbody");
    rows.slice(0, MAX_ROWS).forEach(function (r) {
      var row = el("tr", r.cls || null);
      r.cells.forEach(function (c, i) {
        var td = el("td", heads[i].cls || null);
        if (c && typeof c === "object") td.appendChild(c.node()); else td.textContent = c;
        row.appendChild(td);
      });
      body.appendChild(row);
    });
    t.appendChild(body);
    box.appendChild(t);
    if (rows.length > MAX_ROWS) box.appendChild(el("div", "none", fmtInt(rows.length - MAX_ROWS) + " more not shown"));
  }

  function slotsCell(inUse, slots) {
    return {
      toJSON: function () { return [inUse, slots]; },
      node: function () {
        var span = el("span");
        if (typeof slots === "number" && slots > 0) {
          var bar = el("span", "slots"), fill = el("span");
          fill.style.width = Math.min(100, 100 * num(inUse) / slots) + "%";
          bar.appendChild(fill);
          span.appendChild(bar);
        }
        span.appendChild(document.createTextNode(
          (inUse === null || inUse === undefined ? "–" : fmtInt(inUse)) + " / "
          + (slots === null || slots === undefined ? "–" : fmtInt(slots))));
        return span;
      },
    };
  }

  function stateCell(text, cls) {
    return { toJSON: function () { return text; }, node: function () { return el("span", "state " + (cls || ""), text); } };
  }

  function renderWorkers(snap) {
    $("redeliveries").textContent = fmtInt(snap.redeliveries);
    $("lost-workers").textContent = fmtInt(snap.lost_workers);
    var workers = snap.workers || [];
    // a pool column only when the run has several pools: the table stays narrow
    var pools = {};
    workers.forEach(function (w) { pools[w.pool || "–"] = true; });
    var withPool = Object.keys(pools).length > 1;
    var heads = [{ label: "worker", cls: "mono" }];
    if (withPool) heads.push({ label: "pool" });
    heads = heads.concat([{ label: "host · pid" }, { label: "slots" },
      { label: "heartbeat", cls: "num" }, { label: "state" }, { label: "done", cls: "num" }]);
    var rows = workers.map(function (w) {
      var cells = [String(w.id)];
      if (withPool) cells.push(w.pool || "–");
      return {
        cls: w.state === "lost" ? "lost" : null,
        cells: cells.concat([(w.host || "–") + (w.pid === null || w.pid === undefined ? "" : " · " + w.pid),
          slotsCell(w.in_use, w.slots),
          typeof w.last_heartbeat === "number" ? w.last_heartbeat.toFixed(1) + " s ago" : "–",
          stateCell(String(w.state)), fmtInt(w.done)]),
      };
    });
    table($("workers"), heads, rows, "No workers: this run's tasks run in the engine's process.");
  }

  function renderStreams(snap) {
    var heads = [{ label: "stream", cls: "mono" }, { label: "producer", cls: "mono" }, { label: "items", cls: "num" },
      { label: "credits", cls: "num" }, { label: "state" }];
    var rows = (snap.streams || []).map(function (s) {
      return { cells: [String(s.key), String(s.producer), fmtInt(s.items),
        s.credits === null || s.credits === undefined ? "–" : fmtInt(s.credits),
        stateCell(String(s.state), s.state === "closed" ? "closed" : "")] };
    });
    table($("streams"), heads, rows, "No streams in this run.");
  }

  // -- failures -------------------------------------------------------------------------------

  var picked = null; // key of the failure whose traceback is shown

  function failureKey(f) { return f.task + "#" + f.node + "#" + f.attempt; }

  function renderFailures(snap, changedRun) {
    var list = $("failures");
    var failures = snap.failures || [];
    var count = $("failure-count");
    var failed = Math.max(num((snap.counts || {}).failed), failures.length);
    count.textContent = fmtInt(failed);
    count.className = "badge" + (failed ? " bad" : "");
    if (changedRun) picked = null;
    var key = JSON.stringify(failures.map(failureKey));
    if (list.dataset.key !== key) {
      list.dataset.key = key;
      clear(list);
      failures.forEach(function (f, i) {
        var li = el("li");
        var b = el("button");
        b.type = "button";
        b.dataset.testid = "failure";
        b.dataset.index = String(i);
        b.appendChild(el("span", "meta", "attempt " + f.attempt + " · " + fmtDuration(num(f.t))));
        b.appendChild(el("span", "task", f.task));
        b.appendChild(el("span", "msg", f.type + ": " + f.message));
        b.addEventListener("click", function () {
          var shownF = (state.snapshots[state.selected] || {}).failures || [];
          if (shownF[i]) { picked = failureKey(shownF[i]); showFailure(shownF); }
        });
        li.appendChild(b);
        list.appendChild(li);
      });
      if (!failures.length) list.appendChild(el("li", "none", "No task has failed."));
    }
    showFailure(failures);
  }

  function showFailure(failures) {
    var pre = $("traceback");
    var buttons = $("failures").querySelectorAll("button");
    var found = null;
    failures.forEach(function (f, i) {
      var on = picked !== null && failureKey(f) === picked;
      if (on) found = f;
      if (buttons[i]) buttons[i].setAttribute("aria-pressed", on ? "true" : "false");
    });
    var text = found
      ? found.task + " (node " + found.node + ", attempt " + found.attempt + ")\n\n"
        + (found.traceback || found.type + ": " + found.message)
      : failures.length ? "Select a failure to see its traceback." : "";
    if (pre.textContent !== text) pre.textContent = text;
    pre.hidden = !failures.length;
  }

  // -- logs -----------------------------------------------------------------------------------

  function renderLogs(snap, changedRun) {
    var box = $("logs");
    var logs = snap.logs || [];
    var last = logs.length ? logs[logs.length - 1] : null;
    var key = logs.length + "|" + (last ? last.t + last.message : "");
    if (!changedRun && box.dataset.key === key) return;
    box.dataset.key = key;
    var atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    clear(box);
    if (!logs.length) {
      box.appendChild(el("div", "none", "No log records."));
      return;
    }
    var frag = document.createDocumentFragment();
    logs.forEach(function (r) {
      var line = el("div", "line");
      line.appendChild(el("span", "t", fmtDuration(num(r.t)).padStart(8)));
      line.appendChild(el("span", "lvl " + String(r.level).toUpperCase(), r.level));
      if (r.task) line.appendChild(el("span", "task", r.task));
      line.appendChild(document.createTextNode(String(r.message)));
      frag.appendChild(line);
    });
    box.appendChild(frag);
    if (atBottom || changedRun) box.scrollTop = box.scrollHeight;
  }

  // -- start ----------------------------------------------------------------------------------

  function start() {
    $("run-select").addEventListener("change", function (e) { choose(e.target.value, false); });
    $("task-stream").addEventListener("mousemove", streamHover);
    $("task-stream").addEventListener("mouseleave", function () { $("stream-tip").hidden = true; });
    window.addEventListener("resize", function () {
      graphState.key = null; // laid out again for the new width
      schedule(true);
    });
    window.addEventListener("hashchange", function () {
      var id = hashRun();
      if (id && id !== state.selected) choose(id, true);
    });
    var wanted = hashRun();
    if (wanted) { state.selected = wanted; state.pinned = true; }
    if (report) {
      setConn("", "report" + (report.generated_at ? " · " + fmtClock(report.generated_at) : ""));
      var snaps = report.snapshots || {};
      Object.keys(snaps).forEach(function (id) { state.snapshots[id] = snaps[id]; });
      var runs = report.runs || Object.keys(snaps).map(function (id) { return snaps[id]; });
      if (!state.pinned || !state.snapshots[state.selected]) state.pinned = false;
      setRuns(runs);
      if (!state.selected || !state.snapshots[state.selected]) state.selected = Object.keys(snaps)[0] || null;
      renderSelect();
      schedule(true);
    } else {
      connect();
      // the elapsed clock of a running run ticks between snapshots
      setInterval(function () {
        var snap = state.snapshots[state.selected];
        if (snap && snap.status === "running") $("run-elapsed").textContent = fmtDuration(elapsedOf(snap));
      }, 1000);
    }
  }

  start();
})();
