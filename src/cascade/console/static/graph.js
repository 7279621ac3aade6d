// Topology: the Broker, its Triggers and the functions as an SVG graph drawn from the
// manifests, each delivery edge labelled with its live rate, retries, failures and lag (from
// the broker's metrics, polled), and a dot running along an edge for every delivery (from the
// live stream).
import { el, svg, getJson, message, shortType, printable } from "./dom.js";

const TRIGGER_X = 300, TRIGGER_W = 250, ROW_H = 46, ROW_GAP = 12, TOP = 30;
const BROKER_X = 30, BROKER_W = 150;
const FUNCTION_X = 900, FUNCTION_W = 170, FUNCTION_H = 54, WIDTH = 1180;
const RATE_WINDOW_MS = 10000, POLL_MS = 2000, MAX_PULSES = 80, FRESH_MS = 3000;

export async function topologyView(view) {
  view.append(el("h1", {}, "Topology"), el("p", { class: "hint" }, "Drawn from the manifests. Each delivery edge shows deliveries per second (last 10 s), retries, failed deliveries (dead-lettered or dropped) and lag; a dot runs along an edge for every delivery as it happens."));
  let graph;
  try {
    graph = await getJson("/api/topology");
  } catch (error) {
    view.append(message("error", error.message));
    return;
  }
  const drawing = draw(graph);
  const table = statsTable(graph);
  const status = el("p", { class: "hint", id: "stats-status", role: "status" }, "");
  view.append(el("div", { class: "graph-wrap" }, drawing.node), status, el("h2", {}, "Triggers"), table.node);
  const history = new Map();
  const poll = async () => {
    try {
      const stats = await getJson("/api/stats");
      const now = performance.now();
      for (const [key, row] of Object.entries(stats.triggers)) {
        const finished = row.delivered + row["dead-lettered"] + row.dropped;
        const samples = history.get(key) || [];
        samples.push([now, finished]);
        while (samples.length > 2 && now - samples[1][0] > RATE_WINDOW_MS) samples.shift();
        history.set(key, samples);
        const [t0, v0] = samples[0];
        const rate = now > t0 ? ((finished - v0) * 1000) / (now - t0) : 0;
        drawing.update(key, row, rate);
        table.update(key, row, rate);
      }
      for (const [key, accepted] of Object.entries(stats.brokers)) {
        const label = document.querySelector(`[data-accepted="${CSS.escape(key)}"]`);
        if (label) label.textContent = `${accepted} events accepted`;
      }
      status.textContent = "";
    } catch (error) {
      status.textContent = "metrics: " + error.message;
    }
  };
  await poll();
  window.setInterval(poll, POLL_MS);
  const source = new EventSource("/api/deliveries/stream");
  source.addEventListener("delivery", (event) => drawing.pulse(JSON.parse(event.data).entry));
}

function layout(graph) {
  const triggers = graph.nodes.filter((n) => n.kind === "trigger");
  const functions = graph.nodes.filter((n) => n.kind === "function");
  const brokers = graph.nodes.filter((n) => n.kind === "broker");
  const deliver = graph.edges.filter((e) => e.kind === "deliver");
  // Triggers grouped by subscriber, so the edges into one function stay together.
  const order = functions.map((f) => f.id);
  triggers.sort((a, b) => {
    const fa = order.indexOf((deliver.find((e) => e.from === a.id) || {}).to);
    const fb = order.indexOf((deliver.find((e) => e.from === b.id) || {}).to);
    return fa - fb || a.label.localeCompare(b.label);
  });
  const position = new Map();
  triggers.forEach((node, index) => position.set(node.id, { x: TRIGGER_X, y: TOP + index * (ROW_H + ROW_GAP), w: TRIGGER_W, h: ROW_H }));
  let next = TOP;
  for (const node of functions) {
    const ys = deliver.filter((e) => e.to === node.id).map((e) => position.get(e.from).y + ROW_H / 2);
    const want = ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length - FUNCTION_H / 2 : next;
    const y = Math.max(want, next);
    position.set(node.id, { x: FUNCTION_X, y, w: FUNCTION_W, h: FUNCTION_H });
    next = y + FUNCTION_H + 14;
  }
  const bottom = Math.max(next, TOP + triggers.length * (ROW_H + ROW_GAP));
  brokers.forEach((node, index) => {
    const span = (bottom - TOP) / brokers.length;
    position.set(node.id, { x: BROKER_X, y: TOP + index * span, w: BROKER_W, h: span - 20 });
  });
  return { position, bottom, triggers, functions, brokers };
}

function draw(graph) {
  const { position, bottom, triggers, functions, brokers } = layout(graph);
  const returning = graph.edges.filter((e) => e.kind === "publish" || e.kind === "reply");
  const height = bottom + 40 + returning.length * 18;
  const root = svg("svg", { class: "topology", id: "topology", viewBox: `0 0 ${WIDTH} ${height}`, width: String(WIDTH), height: String(height), role: "img", "aria-label": "topology graph" });
  const defs = svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" })));
  root.append(defs);
  const edgesLayer = svg("g", { class: "edges" });
  const labelLayer = svg("g", { class: "labels" });
  const nodeLayer = svg("g", { class: "nodes" });
  const pulseLayer = svg("g", { class: "pulses" });
  root.append(edgesLayer, nodeLayer, labelLayer, pulseLayer);
  const paths = new Map();
  const labels = new Map();

  const right = (p) => [p.x + p.w, p.y + p.h / 2];
  const left = (p) => [p.x, p.y + p.h / 2];
  for (const edge of graph.edges) {
    const from = position.get(edge.from), to = position.get(edge.to);
    if (!from || !to) continue;
    if (edge.kind === "filter") {
      const [x2, y2] = left(to);
      const y1 = Math.min(Math.max(y2, from.y + 10), from.y + from.h - 10);
      edgesLayer.append(svg("path", { d: `M${from.x + from.w},${y1} L${x2},${y2}`, class: "edge filter", "marker-end": "url(#arrow)" }));
    } else if (edge.kind === "deliver" || edge.kind === "dead-letter") {
      const [x1, y1] = right(from);
      const [x2, y2] = left(to);
      const bend = edge.kind === "dead-letter" ? 40 : 0;
      const d = `M${x1},${y1} C${x1 + 120},${y1 + bend} ${x2 - 120},${y2 + bend} ${x2},${y2}`;
      const path = svg("path", { d, class: `edge ${edge.kind}`, "marker-end": "url(#arrow)", "data-edge": edge.id });
      edgesLayer.append(path);
      paths.set(edge.id, path);
      if (edge.kind === "deliver") {
        const label = svg("text", { x: x1 + 8, y: y1 - 5, class: "edge-label", "data-trigger": edge.trigger }, "");
        labels.set(edge.trigger, label);
        labelLayer.append(label);
      }
    }
  }
  returning.forEach((edge, index) => {
    const from = position.get(edge.from), to = position.get(edge.to);
    if (!from || !to) return;
    // Out of the function's right side, down a lane of its own below everything, back into
    // the broker's bottom: no return edge crosses a node.
    const lane = bottom + 24 + index * 18;
    const y1 = from.y + from.h / 2 + 8;
    const x1 = from.x + from.w + 16 + (returning.length - index) * 12;
    const x2 = to.x + 20 + index * 14;
    const d = `M${from.x + from.w},${y1} H${x1} V${lane} H${x2} V${to.y + to.h}`;
    edgesLayer.append(svg("path", { d, class: `edge ${edge.kind}`, "marker-end": "url(#arrow)", "data-edge": edge.id }));
    const what = edge.kind === "publish" ? "publishes to the broker (K_SINK)" : "replies " + (edge.types || []).map(shortType).join(", ");
    labelLayer.append(svg("text", { x: x2 + 14 + (returning.length - index) * 4, y: lane - 3, class: "lane-label" }, `${edge.from.replace("function:", "")} ${what}`));
  });
  for (const node of brokers) {
    const p = position.get(node.id);
    nodeLayer.append(svg("g", { class: "node broker", "data-node": node.id }, svg("rect", { x: p.x, y: p.y, width: p.w, height: p.h, rx: 10 }), svg("text", { x: p.x + p.w / 2, y: p.y + 24, class: "title" }, node.label), svg("text", { x: p.x + p.w / 2, y: p.y + 42, class: "sub", "data-accepted": node.id.replace("broker:", "") }, "")));
  }
  for (const node of triggers) {
    const p = position.get(node.id);
    nodeLayer.append(svg("g", { class: "node trigger", "data-node": node.id }, svg("title", {}, `Trigger ${node.namespace}/${node.label}\nfilter: ${node.filter}\nretries: ${node.retry}${node.ordered ? "\nordered" : ""}`), svg("rect", { x: p.x, y: p.y, width: p.w, height: p.h, rx: 6 }), svg("text", { x: p.x + 10, y: p.y + 18, class: "title" }, node.label), svg("text", { x: p.x + 10, y: p.y + 35, class: "sub" }, node.filter.replace(/type=(\S+)/, (_, t) => "type=" + shortType(t)))));
  }
  for (const node of functions) {
    const p = position.get(node.id);
    nodeLayer.append(svg("g", { class: "node function", "data-node": node.id }, svg("title", {}, `${node.label} ${node.url}`), svg("rect", { x: p.x, y: p.y, width: p.w, height: p.h, rx: 8 }), svg("text", { x: p.x + p.w / 2, y: p.y + 23, class: "title" }, node.label), svg("text", { x: p.x + p.w / 2, y: p.y + 41, class: "sub" }, (node.url || "").replace("http://", ""))));
  }

  let pulses = 0;
  return {
    node: root,
    update(key, row, rate) {
      const label = labels.get(key);
      if (!label) return;
      const failed = row["dead-lettered"] + row.dropped;
      label.textContent = `${rate.toFixed(1)}/s · ${row.delivered} ok · ${row.retried} retries · ${failed} failed · lag ${row.lag}`;
      label.classList.toggle("has-failed", failed > 0);
      label.classList.toggle("has-retries", row.retried > 0);
      const sink = paths.get("dead-letter:" + key);
      if (sink) sink.classList.toggle("used", row["dead-lettered"] > 0);
    },
    pulse(entry) {
      // The stream starts with the broker's recent backlog: only what just happened runs.
      if (pulses >= MAX_PULSES || document.hidden || !(Date.now() - Date.parse(entry.time) < FRESH_MS)) return;
      const key = `${entry.namespace}/${entry.trigger}`;
      const path = paths.get((entry.outcome === "dead-lettered" ? "dead-letter:" : "deliver:") + key) || paths.get("deliver:" + key);
      if (!path) return;
      const length = path.getTotalLength();
      const dot = svg("circle", { r: 5, class: `pulse ${printable(entry.outcome)}` });
      pulseLayer.append(dot);
      pulses += 1;
      const started = performance.now();
      const step = (now) => {
        const t = Math.min(1, (now - started) / 700);
        const point = path.getPointAtLength(t * length);
        dot.setAttribute("cx", point.x);
        dot.setAttribute("cy", point.y);
        if (t < 1) window.requestAnimationFrame(step);
        else {
          dot.remove();
          pulses -= 1;
        }
      };
      window.requestAnimationFrame(step);
    },
  };
}

function statsTable(graph) {
  const cells = new Map();
  const subscriber = new Map(graph.edges.filter((e) => e.kind === "deliver").map((e) => [e.from, e.to ? e.to.replace("function:", "") : e.subscriber]));
  const rows = graph.nodes
    .filter((n) => n.kind === "trigger")
    .map((node) => {
      const key = `${node.namespace}/${node.label}`;
      const numbers = ["rate", "delivered", "retried", "failed", "lag"].map((name) => el("td", { class: "num", "data-stat": name }, "-"));
      cells.set(key, numbers);
      return el("tr", { "data-trigger": key }, el("td", {}, node.label), el("td", {}, node.filter), el("td", {}, subscriber.get(node.id) || "-"), ...numbers);
    });
  const node = el("table", { class: "trigger-stats", id: "trigger-stats" }, el("thead", {}, el("tr", {}, ...["trigger", "filter", "subscriber", "per s (10 s)", "delivered", "retries", "failed", "lag"].map((h) => el("th", {}, h)))), el("tbody", {}, rows));
  return {
    node,
    update(key, row, rate) {
      const numbers = cells.get(key);
      if (!numbers) return;
      const values = [rate.toFixed(1), row.delivered, row.retried, row["dead-lettered"] + row.dropped, row.lag];
      numbers.forEach((cell, index) => (cell.textContent = String(values[index])));
    },
  };
}

