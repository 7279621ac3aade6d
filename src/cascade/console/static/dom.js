// Shared helpers of the console's pages. Every piece of event text reaches the page through
// text() below: as a text node (never as HTML), with control and direction-changing
// characters shown as \u{..} escapes, so an event can neither run script nor hide or
// reorder what is shown.

const UNSEEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const UNSEEN_INLINE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c) {
  return "\\u{" + c.codePointAt(0).toString(16).padStart(4, "0") + "}";
}

// One-line text (types, ids, keys): newlines and tabs are shown escaped too.
export function printable(value) {
  if (value === null || value === undefined) return "";
  return String(value).replace(UNSEEN_INLINE, escapeChar);
}

// Multi-line text (event data, error bodies): newlines and tabs stay.
export function printableBlock(value) {
  if (value === null || value === undefined) return "";
  return String(value).replace(UNSEEN, escapeChar);
}

export function text(value) {
  return document.createTextNode(printable(value));
}

// el("a", {href: "/x", class: "y"}, "child", otherNode): attributes are set as properties or
// attributes, never parsed; string children become escaped text nodes.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "href") node.setAttribute("href", safeHref(value));
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, name === "class" ? value : printable(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : text(child));
  }
  return node;
}

export function pre(value) {
  const node = document.createElement("pre");
  node.textContent = printableBlock(value);
  return node;
}

// Links the console makes point into the console only.
function safeHref(value) {
  const href = String(value);
  return href.startsWith("/") && !href.startsWith("//") ? href : "#";
}

export function chainHref(key) {
  return "/chains/" + encodeURIComponent(key);
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : text(child));
  }
  return node;
}

export function shortType(type) {
  if (!type) return "-";
  const parts = String(type).split(".");
  return parts.length > 3 ? parts.slice(-2).join(".") : String(type);
}

export function shortId(id) {
  if (!id) return "-";
  const value = String(id);
  return value.length > 12 ? value.slice(0, 8) : value;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
  }
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok && !(body && "ok" in body)) {
    throw new ApiError(response.status, (body && body.title) || `HTTP ${response.status}`, body && body.detail);
  }
  return body;
}

export async function getJson(path) {
  return answer(await fetch(path, { headers: { Accept: "application/json" } }));
}

// State-changing requests carry the token of this page (see security.py).
export async function postJson(path, document) {
  const token = document_token();
  return answer(
    await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Cascade-Console-Token": token },
      body: JSON.stringify(document),
    }),
  );
}

function document_token() {
  const meta = window.document.querySelector('meta[name="cascade-console-token"]');
  return meta ? meta.getAttribute("content") : "";
}

export function message(kind, value) {
  return el("p", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, value);
}

// The activity cells of one delivery as table cells, in the terminal's column order.
export function deliveryRow(delivery, { linkOrder = true } = {}) {
  const entry = delivery.entry;
  const cells = delivery.cells;
  const outcome = printable(entry.outcome || "?");
  const key = entry.partitionkey;
  const status = typeof entry.status === "number" && entry.status >= 300 ? "bad" : "";
  return el(
    "tr",
    { class: `delivery outcome-${outcome}`, "data-seq": entry.seq },
    el("td", { class: "time" }, cells.time),
    el("td", { class: "label" }, el("span", { class: `badge ${outcome}` }, cells.label)),
    el("td", { class: "type", title: entry.type }, cells.type),
    el("td", { class: "order", title: key }, key && linkOrder ? el("a", { href: chainHref(key) }, cells.order) : cells.order),
    el("td", { class: "trigger" }, cells.trigger),
    el("td", { class: `status ${status}` }, cells.status),
    el("td", { class: "detail" }, cells.detail),
    el("td", { class: "extras" }, cells.extras),
  );
}

export function deliveryHead() {
  return el(
    "thead",
    {},
    el("tr", {}, ...["time", "outcome", "type", "order", "trigger", "status", "latency", ""].map((h) => el("th", {}, h))),
  );
}

export function formatMs(ms) {
  if (typeof ms !== "number") return "-";
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

export function clock(ns) {
  if (typeof ns !== "number") return "-";
  const moment = new Date(ns / 1e6);
  return moment.toLocaleTimeString([], { hour12: false }) + "." + String(moment.getMilliseconds()).padStart(3, "0");
}
