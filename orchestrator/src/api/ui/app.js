// Bramble shelf view: draws each shelf as a grid of ports from the /v1 API and shows a
// Pi's boot timeline and console on click. Read-only: every request is a GET, and data reaches the
// DOM only as text (textContent / text nodes), never as markup.
"use strict";

(() => {
  const REFRESH_MS = 2000;
  const TOKEN_KEY = "bramble.token";
  const TIMELINE_KEEP = 300;
  const TIMELINE_PAGES = 10;
  const CONSOLE_KEEP = 2000;
  const STATES = ["new", "ready", "deploying", "deployed", "rescue", "failed", "maintenance", "retired", "empty"];
  // Where a failed last boot stopped (the API's `last_boot.stage`), in boot order, with
  // the words a tile shows.
  const STAGES = {
    power_on: "no DHCP",
    dhcp: "offer refused",
    tftp: "TFTP stopped",
    kernel: "no root",
    system: "no SSH",
  };
  const DIAGNOSES = {
    no_dhcp: "no DHCP",
    no_offer: "no offer",
    offer_rejected: "offer refused",
    tftp_file_missing: "missing file",
    tftp_timeout: "TFTP timeout",
    tftp_refused: "TFTP refused",
    tftp_stopped: "TFTP stopped",
    no_root: "no root",
    no_ssh: "no SSH",
  };

  const view = {
    token: null,
    shelf: null, // show only this shelf (from #shelf=)
    pi: null, // the selected Pi (from #pi= or a click)
    port: null, // the selected slot when it holds no Pi: [shelf, port]
    statuses: [],
    timeline: { pi: null, events: [], cursor: 0 },
    console: { pi: null, boot: null, after: 0, lines: [] },
    timer: null,
  };

  const $ = (id) => document.getElementById(id);

  /** An element with attributes and children; strings become text nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  class ApiFailure extends Error {
    constructor(status, code, detail) {
      super(detail);
      this.status = status;
      this.code = code;
    }
  }

  /** The one place that talks to the controller: GET only, with the bearer token. */
  async function api(path) {
    let resp;
    try {
      resp = await fetch(path, { method: "GET", headers: { Authorization: "Bearer " + view.token }, cache: "no-store" });
    } catch (e) {
      throw new ApiFailure(0, "unreachable", "cannot reach the controller");
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : resp.statusText;
      throw new ApiFailure(resp.status, body && body.code, detail);
    }
    return body;
  }

  // ---- URL fragment: #token=..&shelf=..&pi=.. -------------------------------------

  function readFragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const token = params.get("token");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
    }
    view.token = sessionStorage.getItem(TOKEN_KEY);
    view.shelf = params.get("shelf") || null;
    view.pi = params.get("pi") || null;
    view.port = null;
    // Keep the token out of the address bar and history once it is stored.
    if (token) writeFragment();
  }

  function writeFragment() {
    const params = new URLSearchParams();
    if (view.shelf) params.set("shelf", view.shelf);
    if (view.pi) params.set("pi", view.pi);
    const text = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (text ? "#" + text : ""));
  }

  // ---- formatting ---------------------------------------------------------------

  function iso(ms) {
    const d = new Date(ms);
    return Number.isNaN(d.getTime()) ? "?" : d.toISOString();
  }

  function clock(ms) {
    const text = iso(ms);
    return text === "?" ? text : text.slice(11, 23) + "Z";
  }

  function ago(ms, now) {
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  function shownState(slot) {
    const s = slot.pi ? slot.pi.state : "empty";
    return STATES.includes(s) ? s : "unknown";
  }

  /** The failed last boot's stage (a key of STAGES), or null. */
  function failedStage(pi) {
    const b = pi && pi.last_boot;
    if (!b || b.diagnosis === "booted") return null;
    return Object.hasOwn(STAGES, b.stage) ? b.stage : "power_on";
  }

  function diagnosisText(b) {
    const words = Object.hasOwn(DIAGNOSES, b.diagnosis) ? DIAGNOSES[b.diagnosis] : String(b.diagnosis);
    const file = b.file ? " " + String(b.file).split("/").pop() : "";
    return words + file;
  }

  /** PoE draw in watts from the last boot's reading, e.g. "2.1 W". */
  function drawText(pi) {
    const poe = pi && pi.last_boot && pi.last_boot.poe;
    if (!poe || poe.draw_mw === null || poe.draw_mw === undefined) return null;
    return (poe.draw_mw / 1000).toFixed(1) + " W";
  }

  function modelText(model) {
    return model && model !== "unknown" ? String(model).toUpperCase() : "?";
  }

  function jobText(job) {
    if (!job) return null;
    return job.kind + " " + (job.step || job.state) + " " + job.percent + "%";
  }

  // ---- the grid -----------------------------------------------------------------

  function renderLegend() {
    const items = STATES.map((s) => el("li", {}, el("span", { class: "swatch state-" + s }), s));
    items.push(el("li", {}, el("span", { class: "swatch flag-swatch" }, "⚑"), "flagged"));
    for (const [stage, words] of Object.entries(STAGES)) {
      items.push(el("li", {}, el("span", { class: "swatch diag-" + stage }, "✗"), "boot: " + words));
    }
    items.push(el("li", {}, el("span", { class: "swatch power-swatch" }, "○"), "power off"));
    $("legend").replaceChildren(...items);
  }

  /**
   * One port. Colour carries the most: the left edge is the Pi's state, a failed last
   * boot fills the tile with its stage's colour, a Pi without power is faded. The text
   * is short: port, model, owner, state or diagnosis, draw, job.
   */
  function tile(shelf, slot) {
    const state = shownState(slot);
    const pi = slot.pi;
    const stage = failedStage(pi);
    const classes = ["port", "state-" + state];
    if (slot.flag) classes.push("flagged");
    if (stage) classes.push("diag-" + stage);
    if (pi && pi.power === "off") classes.push("unpowered");
    const selected = pi ? pi.id === view.pi : view.port && view.port[0] === shelf.name && view.port[1] === slot.port;
    if (selected) classes.push("selected");
    const boot = slot.boot ? `${slot.boot.kind} ${ago(slot.boot.at, shelf.read_at)}` : null;
    const diagnosis = stage ? diagnosisText(pi.last_boot) : null;
    const title = [
      `port ${slot.port}`,
      pi ? pi.id : "no Pi",
      pi ? `model ${pi.model} · ${pi.state} · power ${pi.power}` : null,
      pi && pi.owner ? "owner " + pi.owner : null,
      pi && pi.failed_step ? "failed at " + pi.failed_step : null,
      diagnosis ? "last boot: " + diagnosis : null,
      boot,
      slot.flag ? "flag: " + slot.flag : null,
    ]
      .filter(Boolean)
      .join(" · ");
    const draw = drawText(pi);
    const button = el(
      "button",
      {
        type: "button",
        class: classes.join(" "),
        "data-port": slot.port,
        "data-state": state,
        "data-pi": pi && pi.id,
        "data-diagnosis": stage ? pi.last_boot.diagnosis : null,
        title,
      },
      el(
        "span",
        { class: "head" },
        el("span", { class: "port-no" }, String(slot.port)),
        pi ? el("span", { class: "model" }, modelText(pi.model)) : null,
        pi ? el("span", { class: "power power-" + pi.power }, pi.power === "on" ? "●" : "○") : null,
      ),
      el("span", { class: "owner" }, pi ? pi.owner || "unowned" : "—"),
      el("span", { class: "state" }, stage ? "✗ " + diagnosis : state),
      draw || slot.job ? el("span", { class: "meta" }, [draw, slot.job ? jobText(slot.job) : null].filter(Boolean).join(" · ")) : null,
      slot.job ? el("progress", { max: 100, value: slot.job.percent }) : null,
      slot.flag ? el("span", { class: "flag" }, "⚑ " + slot.flag) : null,
    );
    button.addEventListener("click", () => select(shelf, slot));
    return button;
  }

  function renderShelf(shelf) {
    const counts = {};
    for (const slot of shelf.slots) {
      const s = shownState(slot);
      counts[s] = (counts[s] || 0) + 1;
      if (slot.flag) counts.flagged = (counts.flagged || 0) + 1;
    }
    const summary = Object.entries(counts).map(([k, n]) => n + " " + k).join(", ");
    return el(
      "section",
      { class: "shelf", "data-shelf": shelf.name },
      el("h2", {}, shelf.name, " ", el("small", {}, `switch ${shelf.switch_name} · controller ${shelf.controller ?? "-"} · ports ${shelf.first_port}–${shelf.last_port} · ${summary}`)),
      el("div", { class: "grid" }, shelf.slots.map((slot) => tile(shelf, slot))),
    );
  }

  function renderShelves() {
    const nodes = view.statuses.map(renderShelf);
    if (view.shelf) {
      const all = el("a", { href: "#", class: "all" }, "show all shelves");
      nodes.push(all);
    } else if (nodes.length === 0) {
      nodes.push(el("p", { class: "hint" }, "No shelves are enrolled yet."));
    }
    $("shelves").replaceChildren(...nodes);
  }

  // ---- the detail panel and timeline --------------------------------------------

  function select(shelf, slot) {
    view.pi = slot.pi ? slot.pi.id : null;
    view.port = slot.pi ? null : [shelf.name, slot.port];
    writeFragmentFor(shelf.name);
    renderShelves();
    refreshDetail().catch(report);
  }

  /** Makes the address a deep link to the selection (without the token). */
  function writeFragmentFor(shelfName) {
    const keep = view.shelf;
    view.shelf = shelfName;
    writeFragment();
    view.shelf = keep;
  }

  function findSlot() {
    for (const shelf of view.statuses) {
      for (const slot of shelf.slots) {
        if (view.pi && slot.pi && slot.pi.id === view.pi) return [shelf, slot];
        if (!view.pi && view.port && view.port[0] === shelf.name && view.port[1] === slot.port) return [shelf, slot];
      }
    }
    return [null, null];
  }

  function fieldList(pairs) {
    return pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]);
  }

  async function refreshDetail() {
    if (!view.pi && !view.port) {
      $("detail").hidden = true;
      return;
    }
    let [shelf, slot] = findSlot();
    let pi = slot && slot.pi;
    if (view.pi && !pi) {
      pi = await api("/v1/pis/" + encodeURIComponent(view.pi));
    }
    $("detail").hidden = false;
    $("detail-title").textContent = pi ? "Pi " + pi.id : `Port ${view.port[1]} of ${view.port[0]}`;
    const fields = [];
    if (shelf && slot) {
      fields.push(["shelf", shelf.name], ["port", slot.port], ["vlan", slot.vlan], ["storage ip", slot.storage_ip]);
      if (slot.flag) fields.push(["flag", slot.flag], ["flagged", clock(slot.flagged_at || 0)]);
    } else if (pi) {
      fields.push(["shelf", pi.shelf], ["port", pi.port], ["storage ip", pi.storage_ip]);
    }
    if (pi) {
      fields.push(["serial", pi.serial], ["mac", pi.mac], ["model", pi.model], ["state", pi.state], ["power", pi.power]);
      fields.push(["owner", pi.owner], ["image", pi.image], ["failed step", pi.failed_step]);
    }
    if (slot && slot.job) fields.push(["job", slot.job.id + " · " + jobText(slot.job)]);
    if (slot && slot.boot) fields.push(["boot stage", slot.boot.kind + " at " + clock(slot.boot.at)]);
    const last = pi && pi.last_boot;
    if (last) {
      fields.push(["last boot", last.stage + " · " + last.diagnosis + " at " + clock(last.at)]);
      fields.push(["diagnosis", last.operator_message || last.customer_message]);
      if (last.poe) fields.push(["PoE then", last.poe.detection + (last.poe.draw_mw !== null && last.poe.draw_mw !== undefined ? ", " + last.poe.draw_mw + " mW" : "")]);
      const p = last.phases || {};
      const secs = (ms) => (ms === null || ms === undefined ? "-" : (ms / 1000).toFixed(1) + " s");
      fields.push(["phases", `DISCOVER ${secs(p.discover_ms)} · kernel ${secs(p.kernel_ms)} · booted ${secs(p.booted_ms)}`]);
    }
    $("detail-fields").replaceChildren(...fieldList(fields));
    if (pi) {
      await refreshTimeline(pi.id);
      await refreshConsole(pi.id);
    } else {
      $("timeline-note").textContent = "No Pi in this slot.";
      $("timeline").querySelector("tbody").replaceChildren();
      $("console-note").textContent = "";
      $("console").replaceChildren();
    }
  }

  /** Appends the Pi's new events (paging on from the last one seen) and redraws. */
  async function refreshTimeline(piId) {
    const t = view.timeline;
    if (t.pi !== piId) {
      t.pi = piId;
      t.events = [];
      t.cursor = 0;
    }
    for (let page = 0; page < TIMELINE_PAGES; page++) {
      const body = await api(`/v1/pis/${encodeURIComponent(piId)}/events?limit=500&order=asc&cursor=${t.cursor}`);
      const items = Array.isArray(body.items) ? body.items : [];
      if (items.length > 0) {
        t.events.push(...items);
        t.cursor = items[items.length - 1].id;
      }
      if (!body.next_cursor) break;
    }
    if (t.events.length > TIMELINE_KEEP) t.events = t.events.slice(-TIMELINE_KEEP);
    const rows = t.events
      .slice()
      .reverse()
      .map((e) => {
        const family = String(e.kind).split(".")[0];
        const cls = ["dhcp", "tftp", "job", "pi"].includes(family) ? "ev ev-" + family : "ev";
        return el("tr", { class: cls, "data-kind": e.kind }, el("td", { title: iso(e.at) }, clock(e.at)), el("td", {}, e.kind), el("td", {}, e.message));
      });
    $("timeline-note").textContent = rows.length ? `${rows.length} events, newest first` : "No events recorded for this Pi yet.";
    $("timeline").querySelector("tbody").replaceChildren(...rows);
  }

  /**
   * Appends the Pi's new console lines (the latest boot; a newer boot starts over).
   * Each line is the API's `shown` text (control characters already made visible by
   * the controller) put in as a text node: nothing a Pi sends is ever interpreted.
   */
  async function refreshConsole(piId) {
    const c = view.console;
    if (c.pi !== piId) {
      view.console = { pi: piId, boot: null, after: 0, lines: [] };
    }
    const cur = view.console;
    let body = await api(`/v1/pis/${encodeURIComponent(piId)}/console?limit=1000&after=${cur.after}`);
    const boot = body.boot ? body.boot.boot : null;
    if (boot !== cur.boot) {
      cur.boot = boot;
      cur.lines = [];
      cur.after = 0;
      if (boot !== null) body = await api(`/v1/pis/${encodeURIComponent(piId)}/console?limit=1000&boot=${boot}`);
    }
    const lines = Array.isArray(body.lines) ? body.lines : [];
    cur.lines.push(...lines);
    if (lines.length > 0) cur.after = body.next_after;
    if (cur.lines.length > CONSOLE_KEEP) cur.lines = cur.lines.slice(-CONSOLE_KEEP);
    const boots = Array.isArray(body.boots) ? body.boots.length : 0;
    $("console-note").textContent =
      boot === null ? "No console output received from this Pi yet." : `boot ${boot} (${boots} kept), ${cur.lines.length} lines shown`;
    const box = $("console");
    const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.replaceChildren(...cur.lines.map((l) => el("div", { class: "line", title: iso(l.at) }, String(l.shown))));
    if (atEnd) box.scrollTop = box.scrollHeight;
  }

  // ---- the refresh loop ---------------------------------------------------------

  function setStatus(text, bad) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("bad", Boolean(bad));
  }

  function report(e) {
    if (e instanceof ApiFailure && e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      view.token = null;
      showLogin("The controller refused this token: " + e.message);
    } else if (e instanceof ApiFailure && e.status === 403) {
      setStatus("This page needs an operator token: " + e.message, true);
    } else if (e instanceof ApiFailure && e.status === 404) {
      setStatus("Not found: " + e.message, true);
    } else {
      setStatus((e && e.message ? e.message : String(e)) + "; retrying", true);
    }
  }

  function showLogin(message) {
    $("login").hidden = false;
    $("forget").hidden = true;
    setStatus(message || "Paste an operator token to see the shelves.", Boolean(message));
  }

  async function refresh() {
    const names = view.shelf ? [view.shelf] : (await api("/v1/shelves")).map((s) => s.name);
    view.statuses = await Promise.all(names.map((n) => api(`/v1/shelves/${encodeURIComponent(n)}/status`)));
    renderShelves();
    await refreshDetail();
    const read = view.statuses.length ? view.statuses[0].read_at : Date.now();
    setStatus(`updated ${clock(read)} · every ${REFRESH_MS / 1000} s`);
  }

  async function tick() {
    clearTimeout(view.timer);
    if (!view.token) {
      showLogin();
      return;
    }
    $("login").hidden = true;
    $("forget").hidden = false;
    try {
      await refresh();
    } catch (e) {
      report(e);
    }
    if (view.token) view.timer = setTimeout(tick, REFRESH_MS);
  }

  function start() {
    renderLegend();
    readFragment();
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      view.token = value;
      $("token-input").value = "";
      tick();
    });
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      view.token = null;
      clearTimeout(view.timer);
      $("shelves").replaceChildren();
      $("detail").hidden = true;
      showLogin();
    });
    $("detail-close").addEventListener("click", () => {
      view.pi = null;
      view.port = null;
      writeFragment();
      $("detail").hidden = true;
      renderShelves();
    });
    window.addEventListener("hashchange", () => {
      readFragment();
      view.timeline = { pi: null, events: [], cursor: 0 };
      view.console = { pi: null, boot: null, after: 0, lines: [] };
      tick();
    });
    tick();
  }

  start();
})();
