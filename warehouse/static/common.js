/* What every page's script shares: numbers and times for people, JSON from the API, a polite poller. */
(function () {
  "use strict";
  const numberFormat = new Intl.NumberFormat();
  // Field by field: dateStyle and timeStyle cannot be combined with timeZoneName.
  const timeFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    timeZoneName: "short",
  });

  const W = (window.Warehouse = {});

  W.number = (value) => (value === null || value === undefined ? "–" : numberFormat.format(value));

  /* A result's value: numbers, and amounts sent as decimal strings ("12500.00"), grouped by
     thousands; anything else as it is. BigInt: an amount may pass what a double holds exactly. */
  W.figure = (value) => {
    if (typeof value === "number") return W.number(value);
    const text = String(value);
    const decimal = /^(-?)([0-9]+)(\.[0-9]+)?$/.exec(text);
    return decimal ? decimal[1] + numberFormat.format(BigInt(decimal[2])) + (decimal[3] || "") : text;
  };

  W.localTime = (iso) => (iso ? timeFormat.format(new Date(iso)) : "–");

  /* Every <time datetime> in the viewer's own time zone; the UTC text stays as its title. */
  W.localiseTimes = (root) => {
    root.querySelectorAll("time[datetime]").forEach((element) => {
      element.title = element.getAttribute("datetime");
      element.textContent = W.localTime(element.getAttribute("datetime"));
    });
  };

  W.timeHtml = (iso) => {
    if (!iso) return document.createTextNode("–");
    const element = document.createElement("time");
    element.setAttribute("datetime", iso);
    element.title = iso;
    element.textContent = W.localTime(iso);
    return element;
  };

  /* 3725 → "1 h 2 min": two units at most, as the server writes them. */
  W.duration = (seconds) => {
    if (seconds === null || seconds === undefined) return "–";
    let s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    let m = Math.floor(s / 60); s %= 60;
    if (m < 60) return s ? `${m} min ${s} s` : `${m} min`;
    let h = Math.floor(m / 60); m %= 60;
    if (h < 24) return m ? `${h} h ${m} min` : `${h} h`;
    const d = Math.floor(h / 24); h %= 24;
    return h ? `${d} d ${h} h` : `${d} d`;
  };

  class SignedOut extends Error {}
  W.SignedOut = SignedOut;

  /* GET a JSON document of the API with the session cookie. The browser revalidates with the
     answer's ETag by itself, so an unchanged answer costs a 304 and no body. */
  W.getJson = async (url) => {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-cache" });
    if (response.status === 401) throw new SignedOut("the session has ended");
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    return response.json();
  };

  /* Calls tick() every intervalMs, one call at a time; pauses while the tab is hidden and catches
     up at once when it is shown again; stop() ends it for good (no timer, no listener left). */
  W.Poller = class {
    constructor(tick, intervalMs, onError) {
      this.tick = tick; this.intervalMs = intervalMs; this.onError = onError;
      this.timer = null; this.running = false; this.stopped = false;
      this.onVisibility = () => { if (!document.hidden) this.now(); };
    }
    start() {
      document.addEventListener("visibilitychange", this.onVisibility);
      this.schedule();
    }
    schedule() {
      clearTimeout(this.timer);
      if (!this.stopped && !document.hidden) this.timer = setTimeout(() => this.now(), this.intervalMs);
    }
    async now() {
      if (this.stopped || this.running || document.hidden) return;
      clearTimeout(this.timer);
      this.running = true;
      try { await this.tick(); }
      catch (error) { if (this.onError) this.onError(error); }
      finally { this.running = false; this.schedule(); }
    }
    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      document.removeEventListener("visibilitychange", this.onVisibility);
    }
  };

  document.addEventListener("DOMContentLoaded", () => W.localiseTimes(document));
})();
