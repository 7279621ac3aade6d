// The console's views: live deliveries, one chain, dead letters, one trace.
import {
  el, pre, clear, getJson, postJson, message, deliveryRow, deliveryHead, chainHref,
  shortType, shortId, formatMs, clock, printable,
} from "./dom.js";

const MAX_ROWS = 1000;
const FILTERS = ["type", "partitionkey", "trigger", "outcome"];
const OUTCOMES = ["delivered", "retried", "dead-lettered", "dropped"];

// --- live deliveries ------------------------------------------------------------------------

export function liveView(view) {
  const params = new URLSearchParams(window.location.search);
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) || ""]));
  const inputs = {};
  const bar = el("form", { class: "filters", id: "filters" });
  for (const name of ["type", "partitionkey", "trigger"]) {
    inputs[name] = el("input", { name, type: "search", placeholder: name, "aria-label": `filter by ${name}`, maxlength: "256" });
    inputs[name].value = filters[name];
    bar.append(el("label", {}, name, inputs[name]));
  }
  inputs.outcome = el("select", { name: "outcome", "aria-label": "filter by outcome" }, el("option", { value: "" }, "any outcome"), ...OUTCOMES.map((o) => el("option", { value: o }, o)));
  inputs.outcome.value = filters.outcome;
  bar.append(el("label", {}, "outcome", inputs.outcome));
  const state = el("span", { class: "stream-state", id: "stream-state", role: "status" }, "connecting…");
  const paused = el("button", { type: "button", class: "paused", id: "resume", hidden: "hidden" }, "");
  const body = el("tbody", { id: "deliveries" });
  const scroller = el("div", { class: "feed", id: "feed", tabindex: "0" }, el("table", { class: "deliveries" }, deliveryHead(), body));
  view.append(el("h1", {}, "Live deliveries"), el("p", { class: "hint" }, "Every delivery the broker makes, as ", el("code", {}, "cascade run"), " prints it. Scroll up to pause; scroll to the bottom to follow again."), bar, el("div", { class: "feed-bar" }, state, paused), scroller);

  const held = [];
  let pending = [];
  let followTail = true;

  const matches = (delivery) => {
    const entry = delivery.entry;
    for (const name of ["type", "partitionkey", "trigger"]) {
      const want = filters[name].trim();
      if (!want) continue;
      const value = name === "trigger" ? `${entry.namespace}/${entry.trigger}` : String(entry[name] || "");
      if (!value.includes(want)) return false;
    }
    return !filters.outcome || entry.outcome === filters.outcome;
  };
  const render = (delivery) => {
    if (!matches(delivery)) return;
    body.append(deliveryRow(delivery));
    while (body.rows.length > MAX_ROWS) body.deleteRow(0);
  };
  const rerender = () => {
    clear(body);
    for (const delivery of held) render(delivery);
    scroller.scrollTop = scroller.scrollHeight;
  };
  const showPaused = () => {
    paused.hidden = followTail;
    paused.textContent = `Paused: ${pending.length} new — resume`;
  };
  const resume = () => {
    followTail = true;
    for (const delivery of pending) render(delivery);
    pending = [];
    showPaused();
    scroller.scrollTop = scroller.scrollHeight;
  };
  paused.addEventListener("click", resume);
  scroller.addEventListener("scroll", () => {
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 8;
    if (atBottom && !followTail) resume();
    else if (!atBottom && followTail) {
      followTail = false;
      showPaused();
    }
  });
  bar.addEventListener("input", () => {
    for (const name of FILTERS) filters[name] = inputs[name].value;
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    window.history.replaceState(null, "", "/live" + (query.toString() ? "?" + query : ""));
    rerender();
  });
  bar.addEventListener("submit", (event) => event.preventDefault());

  const source = new EventSource("/api/deliveries/stream");
  source.addEventListener("open", () => (state.textContent = "live"));
  source.addEventListener("error", () => (state.textContent = "reconnecting…"));
  source.addEventListener("upstream-error", (event) => (state.textContent = "broker: " + printable(JSON.parse(event.data).detail)));
  source.addEventListener("delivery", (event) => {
    const delivery = JSON.parse(event.data);
    held.push(delivery);
    if (held.length > MAX_ROWS * 2) held.splice(0, held.length - MAX_ROWS * 2);
    if (!followTail) {
      if (matches(delivery)) pending.push(delivery);
      showPaused();
      return;
    }
    render(delivery);
    scroller.scrollTop = scroller.scrollHeight;
  });
}

// --- one chain ------------------------------------------------------------------------------

export async function chainView(view, key) {
  const head = el("header", { class: "chain-head" }, el("h1", {}, "Chain ", el("code", { class: "key" }, key)));
  const live = el("input", { type: "checkbox", id: "auto-refresh", checked: "checked" });
  head.append(el("label", { class: "auto" }, live, "refresh every 2 s"));
  const body = el("div", { id: "chain" });
  view.append(head, body);
  let last = "";
  const load = async () => {
    let chain;
    try {
      chain = await getJson("/api/chains/" + encodeURIComponent(key));
    } catch (error) {
      clear(body).append(message("error", error.message));
      return;
    }
    const signature = JSON.stringify(chain);
    if (signature === last) return;
    last = signature;
    clear(body).append(...renderChain(chain));
  };
  await load();
  window.setInterval(() => live.checked && load(), 2000);
}

function renderChain(chain) {
  const parts = [];
  for (const note of chain.notes) parts.push(message("note", note));
  const summary = el("p", { class: "summary" }, `${chain.events.length} events · ${chain.deliveries.length} broker deliveries · ${chain.dead_letters.length} dead letters · ${chain.traces.length} traces`);
  parts.push(summary);
  if (!chain.events.length && !chain.deliveries.length && !chain.dead_letters.length) {
    parts.push(message("note", "Nothing about this key yet: spans arrive a second or two after the work, and the broker's feed holds only its newest deliveries."));
  }
  if (chain.dead_letters.length) parts.push(el("h2", {}, "Dead letters"), deadLetterTable(chain.dead_letters));
  parts.push(el("h2", {}, "Events"), el("ol", { class: "events", id: "events" }, ...chain.events.map(eventItem)));
  if (chain.deliveries.length) {
    parts.push(
      el("h2", {}, "Broker deliveries"),
      el("table", { class: "deliveries", id: "chain-deliveries" }, deliveryHead(), el("tbody", {}, ...chain.deliveries.map((d) => deliveryRow(d, { linkOrder: false })))),
    );
  }
  parts.push(el("h2", {}, "Traces"));
  if (!chain.traces.length) parts.push(message("note", "No spans for this key in the span store (yet)."));
  for (const trace of chain.traces) parts.push(waterfall(trace));
  return parts;
}

function eventItem(event) {
  let origin = "";
  if (event.reply_to) origin = ["reply of ", el("code", {}, shortId(event.reply_to.id)), ` by ${printable(event.reply_to.service)}`];
  else if (event.published_by) origin = `published by ${printable(event.published_by)}`;
  const attempts = event.attempts.map((a) =>
    el(
      "tr",
      { class: `attempt ${a.target === "dead-letter sink" ? "to-sink" : ""} ${a.outcome && a.outcome !== "success" ? "failed" : ""}` },
      el("td", {}, clock(a.start_ns)),
      el("td", {}, a.trigger),
      el("td", {}, a.target === "dead-letter sink" ? "→ dead-letter sink" : `#${a.attempt}`),
      el("td", { class: typeof a.status === "number" && a.status >= 300 ? "status bad" : "status" }, a.status ?? "---"),
      el("td", {}, a.outcome || "-"),
      el("td", {}, a.handler ? `${a.service}: ${a.handler}` : a.service || "-"),
      el("td", { class: "num" }, formatMs(a.latency_ms)),
    ),
  );
  const replays = event.replays.map((r) => el("li", {}, `replayed (dead letter ${r.dead_letter}, replay #${r.count}) → ${r.status ?? r.error ?? "?"} `, el("a", { href: "/traces/" + r.trace_id }, "trace")));
  return el(
    "li",
    { class: "event", "data-type": event.type },
    el("div", { class: "event-head" }, el("span", { class: "etype", title: event.type }, shortType(event.type)), " ", el("code", { title: "event id" }, event.id), el("span", { class: "origin" }, " ", origin), el("span", { class: "when" }, clock(event.first_ns))),
    attempts.length ? el("table", { class: "attempts" }, el("thead", {}, el("tr", {}, ...["time", "trigger", "attempt", "status", "delivery", "handler", "latency"].map((h) => el("th", {}, h)))), el("tbody", {}, attempts)) : el("p", { class: "hint" }, "no delivery attempt seen"),
    replays.length ? el("ul", { class: "replays" }, replays) : null,
  );
}

export function waterfall(trace) {
  const rows = trace.rows.map((row) => {
    const total = trace.duration_ms || 1;
    const left = Math.min(99.5, (row.offset_ms / total) * 100);
    const width = Math.max(0.5, Math.min(100 - left, (row.duration_ms / total) * 100));
    const bar = el("div", { class: `bar ${row.style || "ok"}` });
    bar.style.left = `${left}%`;
    bar.style.width = `${width}%`;
    const name = el("td", { class: "span-name", title: row.full_name }, row.name + (row.orphan ? " (parent missing)" : ""));
    name.style.paddingLeft = `${0.4 + row.depth * 1.1}em`;
    return el("tr", { class: `span ${row.style || ""}` }, el("td", { class: "service" }, row.service), name, el("td", { class: "lane" }, bar), el("td", { class: "num" }, formatMs(row.duration_ms)), el("td", { class: "outcome" }, row.outcome));
  });
  const links = [
    ...trace.links_to.map((id) => el("li", {}, "links to ", el("a", { href: "/traces/" + id }, id), " (where its events started)")),
    ...trace.linked_from.map((id) => el("li", {}, "linked from ", el("a", { href: "/traces/" + id }, id), " (a replay of a dead letter)")),
  ];
  return el(
    "section",
    { class: "trace", "data-trace": trace.trace_id },
    el("h3", {}, "trace ", el("a", { href: "/traces/" + trace.trace_id }, trace.trace_id), ` · ${trace.spans} spans · ${formatMs(trace.duration_ms)}` + (trace.errors ? ` · ${trace.errors} errors` : "")),
    el("table", { class: "waterfall" }, el("thead", {}, el("tr", {}, ...["service", "span", "waterfall", "duration", "outcome"].map((h) => el("th", {}, h)))), el("tbody", {}, rows)),
    links.length ? el("ul", { class: "links" }, links) : null,
  );
}

export async function traceView(view, traceId) {
  view.append(el("h1", {}, "Trace"));
  try {
    const trace = await getJson("/api/traces/" + traceId);
    for (const key of trace.conversations) view.append(el("p", {}, "chain ", el("a", { href: chainHref(key) }, key)));
    view.append(waterfall(trace));
  } catch (error) {
    view.append(message("error", error.message));
  }
}

// --- dead letters ---------------------------------------------------------------------------

function deadLetterTable(entries) {
  return el(
    "table",
    { class: "dead-letters", id: "dead-letter-table" },
    el("thead", {}, el("tr", {}, ...["id", "type", "order", "code", "failed at", "replays", "order state", "reason", "received"].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      entries.map((entry) =>
        el(
          "tr",
          { "data-id": entry.id },
          el("td", {}, el("a", { href: `/dead-letters/${Number(entry.id)}` }, `#${entry.id}`)),
          el("td", { title: entry.type }, shortType(entry.type)),
          el("td", { title: entry.order_id }, entry.order_id ? el("a", { href: chainHref(entry.order_id) }, shortId(entry.order_id)) : "-"),
          el("td", {}, entry.error_code || "-"),
          el("td", { title: entry.dest }, entry.dest_function || entry.dest || "-"),
          el("td", { class: "num" }, entry.replay_count ?? 0),
          el("td", {}, entry.order_state || "-"),
          el("td", {}, entry.reason || "-"),
          el("td", {}, entry.time || "-"),
        ),
      ),
    ),
  );
}

export async function deadLettersView(view) {
  view.append(el("h1", {}, "Dead letters"), el("p", { class: "hint" }, "Events a Trigger gave up on, newest first. Open one to see why it failed and to replay it (the same rules as ", el("code", {}, "cascade dlq replay"), ")."));
  try {
    const document = await getJson("/api/dead-letters");
    view.append(document.dead_letters.length ? deadLetterTable(document.dead_letters) : message("note", "No dead letters."));
  } catch (error) {
    view.append(message("error", error.message));
  }
}

export async function deadLetterView(view, id) {
  const body = el("div", { id: "dead-letter" });
  view.append(el("h1", {}, `Dead letter #${id}`), body);
  const load = async () => {
    let detail;
    try {
      detail = await getJson(`/api/dead-letters/${id}`);
    } catch (error) {
      clear(body).append(message("error", error.message));
      return;
    }
    clear(body).append(...renderDeadLetter(detail));
  };
  await load();
}

function renderDeadLetter(detail) {
  const event = detail.event || {};
  const attributes = event.attributes || {};
  const facts = [
    ["type", detail.type],
    ["order", detail.order_id ? el("a", { href: chainHref(detail.order_id) }, detail.order_id) : "-"],
    ["failed at", detail.dest ? (detail.dest_function ? `${detail.dest} (${detail.dest_function})` : detail.dest) : "(unknown: no knativeerrordest)"],
    ["error code", detail.error_code || "(no HTTP answer)"],
    ["reason", detail.reason || "-"],
    ["received", `${detail.time} (${detail.arrivals ?? 1} time(s), last ${detail.last_time})`],
    ["replays", String(detail.replay_count ?? 0) + (detail.last_replayed_at ? ` (last ${detail.last_replayed_at})` : "")],
    ["order state", detail.order_state || "not final"],
  ];
  const parts = [el("dl", { class: "facts" }, facts.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]))];
  parts.push(replayBox(detail));
  if (detail.error_text !== undefined) parts.push(el("h2", {}, "Error data (knativeerrordata, decoded)"), pre(detail.error_text));
  parts.push(
    el("h2", {}, "Original event"),
    el("table", { class: "attributes" }, el("tbody", {}, Object.keys(attributes).sort().map((name) => el("tr", {}, el("th", {}, name), el("td", {}, attributes[name]))))),
  );
  if (event.data !== undefined && event.data !== null) parts.push(el("h3", {}, "data"), pre(typeof event.data === "string" ? event.data : JSON.stringify(event.data, null, 2)));
  else if (event.data_base64) parts.push(el("h3", {}, "data (base64)"), pre(event.data_base64));
  return parts;
}

function replayBox(detail) {
  const out = el("div", { class: "replay-out", id: "replay-out", role: "status" });
  const dry = el("button", { type: "button", id: "dry-run" }, "Replay… (dry run first)");
  const box = el("section", { class: "replay" }, el("h2", {}, "Replay"), el("p", { class: "hint" }, "Posts the original event, unchanged, to the subscriber it failed at; a reply goes to the broker. A dry run shows exactly what would be sent."), dry, out);
  dry.addEventListener("click", async () => {
    dry.disabled = true;
    clear(out);
    try {
      const answer = await postJson(`/api/dead-letters/${Number(detail.id)}/replay`, { dry_run: true });
      out.append(el("h3", {}, answer.ok ? "Dry run: this would be sent" : "Refused"), pre(answer.message));
      if (!answer.ok) return;
      const confirm = el("button", { type: "button", id: "confirm-replay", class: "danger" }, "Confirm replay");
      const cancel = el("button", { type: "button", id: "cancel-replay" }, "Cancel");
      out.append(el("p", { class: "confirm" }, confirm, " ", cancel));
      cancel.addEventListener("click", () => {
        clear(out);
        dry.disabled = false;
      });
      confirm.addEventListener("click", async () => {
        confirm.disabled = true;
        cancel.disabled = true;
        try {
          const result = await postJson(`/api/dead-letters/${Number(detail.id)}/replay`, { dry_run: false, confirmation: answer.confirmation });
          clear(out).append(el("h3", { id: "replay-result", class: result.ok ? "ok" : "failed" }, result.ok ? "Replayed" : "Not replayed"), pre(result.message));
          if (detail.order_id) out.append(el("p", {}, "Follow it: ", el("a", { href: chainHref(detail.order_id), id: "replay-chain" }, "the chain of " + shortId(detail.order_id))));
        } catch (error) {
          clear(out).append(message("error", error.message));
        }
      });
    } catch (error) {
      out.append(message("error", error.message));
    } finally {
      if (!out.querySelector("#confirm-replay")) dry.disabled = false;
    }
  });
  return box;
}

