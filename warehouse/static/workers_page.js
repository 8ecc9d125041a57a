/* /workers: the processes table, refreshed from GET /api/workers every 5 s while the tab is shown. */
(function () {
  "use strict";
  const W = window.Warehouse;

  function cell(row, content, numeric) {
    const td = row.insertCell();
    if (numeric) td.className = "num";
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    return td;
  }

  function state(worker) {
    const span = document.createElement("span");
    if (worker.alive) { span.className = "alive"; span.textContent = "● alive"; }
    else { span.className = "lost"; span.textContent = worker.stopped_at ? "○ stopped" : "✗ lost"; }
    return span;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const table = document.getElementById("workers-table");
    if (!table) return;
    const body = table.tBodies[0];
    const poller = new W.Poller(async () => {
      const document_ = await W.getJson(table.dataset.source);
      body.replaceChildren();
      for (const worker of document_.workers) {
        const row = body.insertRow();
        cell(row, worker.node); cell(row, worker.hostname); cell(row, String(worker.pid), true);
        cell(row, state(worker)); cell(row, W.timeHtml(worker.last_seen_at));
        cell(row, W.number(worker.chunks_running), true); cell(row, W.number(worker.chunks_done), true);
        cell(row, W.number(worker.chunks_failed), true);
      }
    }, 5000, (error) => { if (error instanceof W.SignedOut) { poller.stop(); window.location.reload(); } });
    poller.start();
  });
})();
