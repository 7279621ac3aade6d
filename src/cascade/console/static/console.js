// The console's entry point: picks the view from the address, wires the search box.
import { getJson, message, clear } from "./dom.js";
import { topologyView } from "./graph.js";
import { liveView, chainView, deadLettersView, deadLetterView, traceView } from "./views.js";

function route(path) {
  const view = document.getElementById("view");
  let match;
  if (path === "/") return ["topology", () => topologyView(view)];
  if (path === "/live") return ["live", () => liveView(view)];
  if (path === "/dead-letters") return ["dead-letters", () => deadLettersView(view)];
  if ((match = path.match(/^\/dead-letters\/(\d+)$/))) return ["dead-letters", () => deadLetterView(view, Number(match[1]))];
  if ((match = path.match(/^\/traces\/([0-9a-fA-F]{32})$/))) return ["", () => traceView(view, match[1])];
  if ((match = path.match(/^\/chains\/(.+)$/))) {
    let key;
    try {
      key = decodeURIComponent(match[1]);
    } catch {
      return ["", () => view.append(message("error", "That address does not name a chain."))];
    }
    return ["", () => chainView(view, key)];
  }
  return ["", () => view.append(message("error", "No such page."))];
}

async function search(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const result = document.getElementById("search-result");
  const query = form.elements.q.value.trim();
  clear(result);
  if (!query) return;
  try {
    const found = await getJson("/api/search?q=" + encodeURIComponent(query));
    if (found.chain) window.location.assign("/chains/" + encodeURIComponent(found.chain));
    else if (found.trace) window.location.assign("/traces/" + encodeURIComponent(found.trace));
  } catch (error) {
    result.textContent = error.status === 404 ? "nothing found" : String(error.message);
  }
}

function start() {
  const [nav, show] = route(window.location.pathname);
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
  }
  document.getElementById("search").addEventListener("submit", search);
  show();
}

start();
