/* remotetune report: draws the embedded (or polled) JSON document. Every string from the
   store goes in through textContent, never innerHTML. */
(function () {
  "use strict";
  var root = document.getElementById("report");
  var state = { sort: { key: "sequence", dir: 1 }, data: null };
  var FIGURES = ["history", "curves", "parallel", "importance", "timeline"];
  var CONFIG = { responsive: true, displaylogo: false };

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function fmtNum(v) {
    if (v === null || v === undefined) return "";
    if (typeof v !== "number") return String(v);
    return Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(4)
      : String(Math.round(v * 1e6) / 1e6);
  }
  function fmtTime(t) {
    return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "";
  }
  function fmtDuration(s) {
    if (s === null || s === undefined) return "";
    if (s < 120) return s.toFixed(1) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(2) + " h";
  }
  function fmtValue(v) {
    if (v === null || v === undefined) return "";
    return typeof v === "number" ? fmtNum(v) : String(v);
  }

  function renderSummary(d) {
    var e = d.experiment, box = document.getElementById("summary");
    box.replaceChildren();
    var counts = {};
    d.trials.forEach(function (t) { counts[t.status] = (counts[t.status] || 0) + 1; });
    var best = null;
    d.trials.forEach(function (t) {
      if (t.final === null) return;
      if (best === null || (e.optimize_mode === "maximize" ? t.final > best.final
                                                           : t.final < best.final)) best = t;
    });
    var items = [
      ["status", e.status], ["tuner", e.tuner + " (" + e.optimize_mode + ")"],
      ["trials", d.trials.length + (e.max_trial_number ? " / " + e.max_trial_number : "")],
      ["concurrency", e.trial_concurrency],
      ["by status", Object.keys(counts).sort().map(function (k) {
        return k.toLowerCase() + " " + counts[k]; }).join(", ")],
      ["best", best ? fmtNum(best.final) + " (trial " + best.id + ")" : "-"],
      ["created", fmtTime(e.created_at)], ["ended", fmtTime(e.ended_at)],
      ["source", e.source]
    ];
    if (e.max_experiment_duration) items.push(["max duration",
                                               fmtDuration(e.max_experiment_duration)]);
    if (e.message) items.push(["message", e.message]);
    items.forEach(function (kv) {
      var span = el("span");
      span.appendChild(el("b", kv[0] + ": "));
      span.appendChild(document.createTextNode(String(kv[1])));
      box.appendChild(span);
    });
    document.getElementById("title").textContent =
      "remotetune: " + e.name + " (" + e.id + ")";
    document.title = "remotetune report: " + e.name + " (" + e.id + ")";
  }

  var TRIAL_COLUMNS = [
    ["sequence", "#", true], ["id", "trial", false], ["status", "status", false],
    ["final", "final", true], ["best", "best intermediate", true],
    ["points", "points", true], ["where", "host:GPU", false],
    ["started_at", "started (UTC)", true], ["duration", "duration", true]
  ];

  function sortValue(t, key) {
    if (key.indexOf("param:") === 0) return t.parameters[key.slice(6)];
    return t[key];
  }
  function compare(a, b) {
    var an = a === null || a === undefined, bn = b === null || b === undefined;
    if (an || bn) return an === bn ? 0 : (an ? 1 : -1);
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b));
  }

  function renderTrials(d) {
    var table = document.getElementById("trials-table");
    var names = {};
    d.trials.forEach(function (t) { Object.keys(t.parameters).forEach(function (k) {
      names[k] = true; }); });
    var cols = TRIAL_COLUMNS.concat(Object.keys(names).sort().map(function (k) {
      return ["param:" + k, k, false]; }));
    cols.push(["message", "message", false]);
    var key = state.sort.key, dir = state.sort.dir;
    var rows = d.trials.slice().sort(function (a, b) {
      var va = sortValue(a, key), vb = sortValue(b, key);
      if (va == null || vb == null) return compare(va, vb) || a.sequence - b.sequence;
      return compare(va, vb) * dir || a.sequence - b.sequence;  // empty cells stay last
    });
    var thead = el("thead"), tr = el("tr");
    cols.forEach(function (c) {
      var th = el("th", c[1]);
      th.dataset.key = c[0];
      if (c[0] === key) th.className = dir > 0 ? "sorted-asc" : "sorted-desc";
      th.addEventListener("click", function () {
        state.sort = { key: c[0], dir: state.sort.key === c[0] ? -state.sort.dir : 1 };
        renderTrials(state.data);
      });
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    var tbody = el("tbody");
    rows.forEach(function (t) {
      var row = el("tr");
      row.dataset.trialId = t.id;
      cols.forEach(function (c) {
        var v = sortValue(t, c[0]), td;
        if (c[0] === "started_at") td = el("td", fmtTime(v));
        else if (c[0] === "duration") td = el("td", fmtDuration(v), "num");
        else if (c[0] === "status") td = el("td", v, "status status-" + v);
        else td = el("td", fmtValue(v), typeof v === "number" ? "num" : "");
        td.dataset.key = c[0];
        if (typeof v === "number") td.dataset.value = String(v);
        row.appendChild(td);
      });
      tbody.appendChild(row);
    });
    table.replaceChildren(thead, tbody);
  }

  function simpleTable(id, cols, items) {
    var table = document.getElementById(id), thead = el("thead"), tr = el("tr");
    cols.forEach(function (c) { tr.appendChild(el("th", c[1])); });
    thead.appendChild(tr);
    var tbody = el("tbody");
    items.forEach(function (item) {
      var row = el("tr");
      cols.forEach(function (c) {
        var v = c[2] ? c[2](item) : item[c[0]];
        row.appendChild(el("td", fmtValue(v), c[3] ? c[3](item) : ""));
      });
      tbody.appendChild(row);
    });
    table.replaceChildren(thead, tbody);
  }

  function renderHosts(d) {
    simpleTable("hosts-table", [
      ["host", "host"], ["reachable", "reachable", function (h) { return h.reachable ? "yes" : "no"; }],
      ["slots", "slots"], ["running", "running"],
      ["gpus", "GPUs", function (h) {
        return h.gpus.map(function (g) {
          return g.index + ": " + (g.name || "gpu") + " " + Math.round(g.utilization_pct) +
            "% util, " + Math.round(g.memory_used_pct) + "% mem" +
            (g.trials.length ? " [" + g.trials.join(", ") + "]" : "");
        }).join("; ");
      }],
      ["updated_at", "updated (UTC)", function (h) { return fmtTime(h.updated_at); }],
      ["message", "message"]
    ], d.hosts);
    document.getElementById("machines").textContent = JSON.stringify(d.machines, null, 2);
  }

  function renderEvents(d) {
    simpleTable("events-table", [
      ["time", "time (UTC)", function (e) { return fmtTime(e.time); }],
      ["level", "level", null, function (e) { return "level-" + e.level; }],
      ["kind", "kind"], ["trial_id", "trial"], ["host", "host"], ["message", "message"]
    ], d.events.slice().reverse());
  }

  function renderFigures(d) {
    FIGURES.forEach(function (name) {
      var fig = d.figures[name], div = document.getElementById("fig-" + name);
      if (fig && div) Plotly.react(div, fig.data, fig.layout || {}, CONFIG);
    });
  }

  function render(d) {
    state.data = d;
    renderSummary(d);
    renderFigures(d);
    renderTrials(d);
    renderHosts(d);
    renderEvents(d);
    document.getElementById("config").textContent = JSON.stringify(d.config, null, 2);
    var note = document.getElementById("importance-note");
    note.textContent = d.importance.note ? "Not shown: " + d.importance.note + "." : "";
    root.dataset.generatedAt = String(d.generated_at);
    root.dataset.rendered = String((Number(root.dataset.rendered) || 0) + 1);
  }

  function poll(url, interval) {
    var status = document.getElementById("live-status");
    function tick() {
      var u = new URL(url);
      if (state.data && state.data.version) u.searchParams.set("since", state.data.version);
      fetch(u.toString(), { cache: "no-store", credentials: "same-origin" }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.status === 204 ? null : r.json();  // 204: nothing changed
      }).then(function (d) {
        if (d) render(d);
        status.textContent = "live: updated " + new Date().toLocaleTimeString();
      }).catch(function (err) {
        status.textContent = "live: update failed (" + err.message + "), retrying";
      }).then(function () { setTimeout(tick, interval); });
    }
    setTimeout(tick, interval);
  }

  render(JSON.parse(document.getElementById("report-data").textContent));
  if (root.dataset.liveUrl) {
    var url = new URL(root.dataset.liveUrl, window.location.href);
    var token = new URLSearchParams(window.location.search).get("token");
    if (token) url.searchParams.set("token", token);
    poll(url.toString(), Number(root.dataset.liveInterval) || 2000);
  }
})();
