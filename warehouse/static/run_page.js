/* /runs/{id}: the run, live. Polls GET /api/runs/{id} every 2 s, the chunk map's states with it (a
   304 when nothing changed), the throughput every 5 s and the failures when their counts change;
   pauses while the tab is hidden, and stops for good once the run has ended. */
(function () {
  "use strict";
  const W = window.Warehouse;
  const STATUS_POLL_MS = 2000;
  const TIMELINE_EVERY_MS = 5000;
  const FAILURES_PER_PAGE = 20;
  const ACTIVE = new Set(["pending", "running", "cancelling"]);
  const STATUS = {
    pending: ["◌", "Pending"], running: ["▶", "Running"], cancelling: ["■", "Cancelling"],
    succeeded: ["✓", "Succeeded"], partially_failed: ["⚠", "Partially failed"], failed: ["✗", "Failed"],
    cancelled: ["■", "Cancelled"],
  };
  const STATES = { p: "pending", r: "running", d: "done", f: "failed", s: "skipped" };

  const $ = (id) => document.getElementById(id);

  /* ---- the chunk map: one cell per chunk, on a canvas (20,000 DOM cells would be slow) ---- */
  class ChunkMap {
    constructor(canvas, readout) {
      this.canvas = canvas; this.readout = readout; this.states = ""; this.selected = -1;
      this.cell = 8; this.columns = 1;
      this.colours = {};
      const style = getComputedStyle(document.documentElement);
      for (const state of Object.values(STATES)) this.colours[state] = style.getPropertyValue(`--${state}`).trim();
      canvas.addEventListener("mousemove", (event) => this.select(this.indexAt(event.offsetX, event.offsetY)));
      canvas.addEventListener("click", (event) => this.select(this.indexAt(event.offsetX, event.offsetY)));
      canvas.addEventListener("keydown", (event) => this.key(event));
      canvas.addEventListener("focus", () => { if (this.selected < 0 && this.states.length) this.select(0); });
      window.addEventListener("resize", () => { if (this.states) this.layout(); });
    }

    layout() {
      const count = Math.max(this.states.length, 1);
      const width = this.canvas.parentElement.clientWidth || 600;
      const maxHeight = Math.max(240, Math.min(480, window.innerHeight * 0.6));
      // Cells as big as fit the width and the height given, so 40 chunks read large and 20,000 still fit.
      this.cell = Math.max(3, Math.min(24, Math.floor(Math.sqrt((width * maxHeight) / count))));
      this.columns = Math.max(1, Math.floor(width / this.cell));
      const rows = Math.ceil(count / this.columns);
      const ratio = window.devicePixelRatio || 1;
      this.canvas.style.width = `${this.columns * this.cell}px`;
      this.canvas.style.height = `${rows * this.cell}px`;
      this.canvas.width = Math.round(this.columns * this.cell * ratio);
      this.canvas.height = Math.round(rows * this.cell * ratio);
      this.context = this.canvas.getContext("2d");
      this.context.setTransform(ratio, 0, 0, ratio, 0, 0);
      for (let index = 0; index < this.states.length; index++) this.draw(index);
    }

    update(states) {
      const previous = this.states;
      this.states = states;
      if (previous.length !== states.length) { this.layout(); }
      else { for (let index = 0; index < states.length; index++) if (states[index] !== previous[index]) this.draw(index); }
      if (this.selected >= 0) this.describe(this.selected);
      this.canvas.dataset.states = states;  // what the page shows, for whoever reads the DOM
    }

    /* Shapes as well as colours: hollow pending, half-filled running, full done, crossed failed,
       struck-through skipped. */
    draw(index) {
      const context = this.context, size = this.cell, gap = size >= 6 ? 1 : 0;
      const x = (index % this.columns) * size, y = Math.floor(index / this.columns) * size, inner = size - gap;
      const state = STATES[this.states[index]] || "pending";
      context.clearRect(x, y, size, size);
      context.fillStyle = this.colours[state];
      context.strokeStyle = this.colours[state];
      context.lineWidth = 1;
      if (state === "pending") {
        context.strokeRect(x + 0.5, y + 0.5, inner - 1, inner - 1);
      } else if (state === "running") {
        context.strokeRect(x + 0.5, y + 0.5, inner - 1, inner - 1);
        context.fillRect(x, y, Math.ceil(inner / 2), inner);
      } else {
        context.fillRect(x, y, inner, inner);
      }
      if (size >= 7 && (state === "failed" || state === "skipped")) {
        context.strokeStyle = state === "failed" ? "#ffffff" : "#333333";
        context.beginPath();
        context.moveTo(x + 1.5, y + inner - 1.5); context.lineTo(x + inner - 1.5, y + 1.5);
        if (state === "failed") { context.moveTo(x + 1.5, y + 1.5); context.lineTo(x + inner - 1.5, y + inner - 1.5); }
        context.stroke();
      }
      if (index === this.selected) {
        context.strokeStyle = "#000000"; context.lineWidth = 2;
        context.strokeRect(x + 1, y + 1, Math.max(inner - 2, 1), Math.max(inner - 2, 1));
      }
    }

    indexAt(offsetX, offsetY) {
      const index = Math.floor(offsetY / this.cell) * this.columns + Math.floor(offsetX / this.cell);
      return index >= 0 && index < this.states.length && offsetX < this.columns * this.cell ? index : -1;
    }

    select(index) {
      if (index < 0 || index === this.selected) return;
      const before = this.selected;
      this.selected = index;
      if (before >= 0) this.draw(before);
      this.draw(index);
      this.describe(index);
    }

    describe(index) {
      const state = STATES[this.states[index]] || "pending";
      this.readout.textContent = `Chunk ${W.number(index + 1)} of ${W.number(this.states.length)}: ${state}`;
    }

    key(event) {
      const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -this.columns, ArrowDown: this.columns,
                      Home: -Infinity, End: Infinity, PageUp: -this.columns * 10, PageDown: this.columns * 10 };
      if (!(event.key in moves) || !this.states.length) return;
      event.preventDefault();
      const from = Math.max(this.selected, 0);
      this.select(Math.min(this.states.length - 1, Math.max(0, from + moves[event.key])));
    }
  }

  /* ---- the throughput chart: bars of items per second, in SVG ---- */
  function drawChart(container, text, timeline, ended) {
    const buckets = timeline.buckets || [];
    // Drawn at the container's own width, so its labels keep their size on a phone.
    const width = Math.max(300, Math.min(1200, container.clientWidth || 600)), height = 160, left = 44, bottom = 20;
    const top = Math.max(1, ...buckets.map((bucket) => bucket.items_per_second));
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("aria-hidden", "true");
    const add = (name, attributes, content) => {
      const element = document.createElementNS(ns, name);
      for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
      if (content !== undefined) element.textContent = content;
      svg.appendChild(element);
      return element;
    };
    add("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" });
    add("text", { x: left - 6, y: 12, "text-anchor": "end" }, W.number(Math.round(top)));
    add("text", { x: left - 6, y: height - bottom, "text-anchor": "end" }, "0");
    // At least 30 slots: the first buckets of a run draw as narrow bars on the left, not one wide block.
    const slot = (width - left) / Math.max(buckets.length, 30);
    buckets.forEach((bucket, index) => {
      const barHeight = ((height - bottom - 16) * bucket.items_per_second) / top;
      add("rect", { x: left + index * slot + 1, y: height - bottom - barHeight, width: Math.max(slot - 2, 1), height: barHeight, class: "bar" })
        .appendChild(document.createElementNS(ns, "title")).textContent =
          `${W.localTime(bucket.start)}: ${W.number(Math.round(bucket.items_per_second))} items/s`;
    });
    if (buckets.length) {
      const clock = (iso) => new Date(iso).toLocaleTimeString();
      add("text", { x: left, y: height - 4 }, clock(buckets[0].start));
      if (buckets.length * slot > 140) {  // else the two labels would overlap
        add("text", { x: left + buckets.length * slot, y: height - 4, "text-anchor": "end" }, clock(buckets[buckets.length - 1].start));
      }
    }
    container.replaceChildren(svg);
    if (!buckets.length) { text.textContent = "No chunk has finished yet."; return; }
    const items = buckets.reduce((sum, bucket) => sum + bucket.items, 0);
    const seconds = buckets.length * timeline.bucket_seconds;
    // While the run goes on, its last bucket is still filling: the one before says the pace.
    const latest = buckets[buckets.length - (!ended && buckets.length > 1 ? 2 : 1)].items_per_second;
    text.textContent = `Latest ${W.number(Math.round(latest))} items/s; ${W.number(Math.round(items / Math.max(seconds, 1)))} items/s on average `
      + `over ${W.duration(seconds)} (bars of ${W.duration(timeline.bucket_seconds)}; the highest is ${W.number(Math.round(top))} items/s).`;
  }

  /* ---- the run's figures ---- */
  function renderRun(run, canOperate) {
    const [symbol, label] = STATUS[run.status] || ["•", run.status];
    const badge = document.createElement("span");
    badge.className = `status status-${run.status}`;
    badge.dataset.status = run.status;
    badge.innerHTML = `<span aria-hidden="true">${symbol}</span> `;
    badge.appendChild(document.createTextNode(label));
    $("status").replaceChildren(badge);

    const items = run.items, chunks = run.chunks;
    $("items-bar").max = Math.max(items.total, 1);
    $("items-bar").value = items.done + items.failed;
    $("items-text").textContent = `${W.number(items.done)} of ${W.number(items.total)} items done, ${W.number(items.failed)} failed`
      + (items.total ? ` (${Math.floor((100 * (items.done + items.failed)) / items.total)} % through)` : "");
    $("chunks-bar").max = Math.max(chunks.total, 1);
    $("chunks-bar").value = chunks.total - chunks.remaining;
    $("chunks-text").textContent = `${W.number(chunks.done)} of ${W.number(chunks.total)} chunks done, `
      + `${W.number(chunks.failed)} failed, ${W.number(chunks.skipped)} skipped`;
    $("started").replaceChildren(W.timeHtml(run.started_at));
    $("finished").replaceChildren(W.timeHtml(run.finished_at));
    const ended = !ACTIVE.has(run.status);
    $("eta").textContent = ended ? "none: it has ended" : run.eta_seconds === null ? "not known yet" : `about ${W.duration(run.eta_seconds)}`;
    $("redrives").textContent = redrives(run.redrive_count || 0);
    renderElapsed(run);

    $("result-section").hidden = !ended;
    const result = $("result");
    result.replaceChildren();
    for (const [key, value] of Object.entries(run.result || {})) {
      const row = document.createElement("div");
      row.appendChild(document.createElement("dt")).textContent = key.replaceAll("_", " ");
      row.appendChild(document.createElement("dd")).textContent = W.figure(value);
      result.appendChild(row);
    }
    $("run-error").hidden = !run.error;
    $("run-error").textContent = run.error || "";

    if (canOperate) {
      // A run whose chunk details retention removed has nothing left to redrive.
      const redrivable = ["succeeded", "partially_failed", "failed"].includes(run.status) && !run.details_purged_at
        && (chunks.failed > 0 || items.failed > 0 || (run.status === "failed" && chunks.skipped > 0));
      const shown = { cancel: ["pending", "running"].includes(run.status), resume: ["pending", "running"].includes(run.status), redrive: redrivable };
      document.querySelectorAll("#actions form").forEach((form) => { form.hidden = !shown[form.dataset.action]; });
    }
  }

  function redrives(count) {
    return count === 0 ? "never" : count === 1 ? "once" : `${W.number(count)} times`;
  }

  function renderElapsed(run) {
    if (!run.started_at) { $("elapsed").textContent = "not started"; return; }
    const end = run.finished_at ? new Date(run.finished_at) : new Date();
    $("elapsed").textContent = W.duration(Math.max(0, (end - new Date(run.started_at)) / 1000));
  }

  function renderWorkers(workers) {
    const body = $("run-workers").tBodies[0];
    body.replaceChildren();
    if (!workers.length) {
      const cell = body.insertRow().insertCell();
      cell.colSpan = 5; cell.className = "muted"; cell.textContent = "No chunk has started yet.";
      return;
    }
    for (const worker of workers) {
      const row = body.insertRow();
      row.insertCell().textContent = worker.node;
      const state = row.insertCell().appendChild(document.createElement("span"));
      if (worker.alive === true) { state.className = "alive"; state.textContent = "● alive"; }
      else if (worker.alive === false) { state.className = "lost"; state.textContent = "✗ lost or stopped"; }
      else { state.textContent = "not known"; }
      for (const count of [worker.chunks_running, worker.chunks_done, worker.chunks_failed]) {
        const cell = row.insertCell(); cell.className = "num"; cell.textContent = W.number(count);
      }
    }
  }

  function renderFailures(failures, pages) {
    const items = $("failed-items"), chunks = $("failed-chunks");
    items.tBodies[0].replaceChildren();
    for (const failure of failures.items) {
      const row = items.tBodies[0].insertRow();
      row.insertCell().textContent = failure.item || `item ${failure.item_id}`;
      row.insertCell().textContent = failure.error;
    }
    chunks.tBodies[0].replaceChildren();
    for (const chunk of failures.chunks.filter((chunk) => chunk.error)) {
      const row = chunks.tBodies[0].insertRow();
      row.insertCell().textContent = `ids ${W.number(chunk.start_id)}–${W.number(chunk.end_id)}`;
      const attempts = row.insertCell(); attempts.className = "num"; attempts.textContent = W.number(chunk.attempts);
      row.insertCell().textContent = chunk.error;
    }
    items.hidden = !items.tBodies[0].rows.length && !pages.cursor;
    chunks.hidden = !chunks.tBodies[0].rows.length;
    $("failures-empty").hidden = !(items.hidden && chunks.hidden);
    $("failures-pager").hidden = !failures.next_cursor && !pages.cursor;
    $("failures-next").disabled = !failures.next_cursor;
    $("failures-first").disabled = !pages.cursor;
    pages.next = failures.next_cursor;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = $("run");
    const base = `/api/runs/${root.dataset.runId}`;
    const canOperate = Boolean($("actions"));
    const map = new ChunkMap($("chunk-map"), $("map-readout"));
    let run = JSON.parse($("run-document").textContent);
    let timelineAt = 0, failuresSeen = null;
    const pages = { cursor: null, next: null };

    const refreshChunks = async () => {
      const chunks = await W.getJson(`${base}/chunks`);
      map.update(chunks.states);
      for (const [state, count] of Object.entries(chunks.counts)) {
        const element = document.querySelector(`[data-count="${state}"]`);
        if (element) element.textContent = W.number(count);
      }
      renderWorkers(chunks.workers);
    };
    const refreshTimeline = async () => {
      timelineAt = Date.now();
      drawChart($("throughput-chart"), $("throughput-text"), await W.getJson(`${base}/timeline`), !ACTIVE.has(run.status));
    };
    const refreshFailures = async () => {
      const query = new URLSearchParams({ limit: FAILURES_PER_PAGE });
      if (pages.cursor) query.set("cursor", pages.cursor);
      renderFailures(await W.getJson(`${base}/failures?${query}`), pages);
    };
    $("failures-next").addEventListener("click", () => { pages.cursor = pages.next; refreshFailures(); });
    $("failures-first").addEventListener("click", () => { pages.cursor = null; refreshFailures(); });

    /* Everything once; then only what changed. Returns whether the run has ended. */
    const refresh = async (first) => {
      if (!first) { run = await W.getJson(base); renderRun(run, canOperate); }
      const ended = !ACTIVE.has(run.status);
      // Its chunks, timeline and failures were removed with its details: the page's note says so.
      if (run.details_purged_at) return ended;
      const work = [refreshChunks()];
      if (first || ended || Date.now() - timelineAt >= TIMELINE_EVERY_MS) work.push(refreshTimeline());
      const failuresNow = `${run.items.failed}/${run.chunks.failed}/${run.redrive_count || 0}`;
      if (failuresNow !== failuresSeen) { failuresSeen = failuresNow; work.push(refreshFailures()); }
      await Promise.all(work);
      return ended;
    };

    let clock = null;
    const finish = (poller) => {
      if (poller) poller.stop();
      clearInterval(clock);
      root.dataset.ended = "true";
      $("live-note").textContent = "This run has ended.";
    };
    const signedOut = (error, poller) => {
      if (!(error instanceof W.SignedOut)) { $("live-note").textContent = "Could not reach the server; trying again."; return; }
      if (poller) poller.stop();
      clearInterval(clock);
      $("live-note").textContent = "Your session has ended: sign in again to keep watching.";
    };

    renderRun(run, canOperate);
    refresh(true).then((ended) => {
      if (ended) { finish(null); return; }
      clock = setInterval(() => renderElapsed(run), 1000);  // no request: the clock only
      const poller = new W.Poller(async () => { if (await refresh(false)) finish(poller); }, STATUS_POLL_MS,
                                  (error) => signedOut(error, poller));
      poller.start();
    }, (error) => signedOut(error, null));
  });
})();
