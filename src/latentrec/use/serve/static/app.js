// The latentrec page: search, neighbours, fold-in recommendations from your ratings, and the item map.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const ratings = new Map();  // item id -> {title, rating: stars given, 1 to 5}
let mapPoints = new Map();  // item id -> circle
let scale = [1, 5];  // the model's rating range (from /readyz): 1 to 5 stars span it, whatever its numbers

// The rating `stars` of 5 stand for: the bottom of the scale to its top in even steps (1-5 stars on 1-5, 0-100 on
// a 0-100 scale, 0 to 1 on a like/dislike one).
const starRating = (stars) => +(scale[0] + (stars - 1) / 4 * (scale[1] - scale[0])).toPrecision(6);

async function api(path, body) {
  const init = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                           body: JSON.stringify(body)};
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : data.detail;
    throw new Error(detail || `${res.status} ${res.statusText}`);
  }
  return data;
}

function showError(e) {
  $("error").textContent = e ? String(e.message || e) : "";
  $("error").hidden = !e;
}

function stars(item, title) {
  const box = document.createElement("span");
  box.className = "stars";
  const current = ratings.get(item)?.rating || 0;
  for (let v = 1; v <= 5; v++) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "★";
    b.title = `${v} of 5 stars`;
    b.setAttribute("aria-label", `Rate ${title} ${v} of 5 stars`);
    b.dataset.value = v;
    if (v <= current) b.classList.add("on");
    b.addEventListener("click", () => rate(item, title, v));
    box.append(b);
  }
  return box;
}

// One row: a clickable title, an optional score, and stars to rate it.
function row(item, title, score) {
  const li = document.createElement("li");
  li.dataset.item = item;
  const a = document.createElement("a");
  a.className = "title";
  a.textContent = title || `item ${item}`;
  a.addEventListener("click", () => openItem(item, title));
  li.append(a);
  if (score !== undefined) {
    const s = document.createElement("span");
    s.className = "score";
    s.textContent = score;
    li.append(s);
  }
  li.append(stars(item, title));
  return li;
}

function fill(list, rows) {
  list.replaceChildren(...rows);
}

async function search(event) {
  event.preventDefault();
  const q = $("search").value.trim();
  if (!q) return;
  try {
    const data = await api(`api/items?q=${encodeURIComponent(q)}&n=15`);
    const rows = data.items.map((it) => row(it.item, it.title, `${it.n_ratings} ratings`));
    if (!rows.length) {
      const li = document.createElement("li");
      li.textContent = `No title contains “${q}”.`;
      rows.push(li);
    }
    fill($("search-results"), rows);
    showError(null);
  } catch (e) { showError(e); }
}

async function openItem(item, title) {
  try {
    const data = await api(`api/items/${encodeURIComponent(item)}/similar?n=10&min_ratings=10`);
    $("neighbours-title").textContent = `Neighbours of ${data.title || "item " + item}`;
    $("neighbours-title").hidden = false;
    fill($("neighbours"), data.similar.map((s) => row(s.item, s.title, s.similarity.toFixed(2))));
    highlight(item, data.similar.map((s) => s.item));
    showError(null);
  } catch (e) { showError(e); }
}

function rate(item, title, value) {
  ratings.set(item, {title, rating: value});
  drawRatings();
  for (const box of document.querySelectorAll(`li[data-item="${CSS.escape(item)}"] .stars`)) {
    box.querySelectorAll("button").forEach((b) => b.classList.toggle("on", Number(b.dataset.value) <= value));
  }
}

function drawRatings() {
  fill($("ratings"), [...ratings].map(([item, r]) => {
    const li = row(item, r.title);
    const x = document.createElement("button");
    x.type = "button";
    x.textContent = "×";
    x.title = "Forget this rating";
    x.addEventListener("click", () => { ratings.delete(item); drawRatings(); });
    li.append(x);
    return li;
  }));
  $("recommend").disabled = ratings.size === 0;
  $("recommend").textContent = `Recommend for me (${ratings.size} rated)`;
  for (const [id, c] of mapPoints) c.classList.toggle("rated", ratings.has(id));
}

async function recommendForMe() {
  const body = {n: 10, ratings: [...ratings].map(([item, r]) => ({item, rating: starRating(r.rating)}))};
  try {
    const data = await api("api/recommendations", body);
    fill($("recommendations"), data.recommendations.map((r) => row(r.item, r.title, r.prediction === null ? "" : r.prediction.toFixed(1))));
    showError(null);
  } catch (e) { showError(e); }
}

async function drawMap() {
  const svg = $("map");
  let data;
  try { data = await api("api/map?n_items=1000"); } catch (e) {
    $("map-caption").textContent = `No map for this model: ${e.message}`;
    return;
  }
  const xs = data.items.map((p) => p.x), ys = data.items.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => 20 + 560 * (x - x0) / ((x1 - x0) || 1), sy = (y) => 580 - 560 * (y - y0) / ((y1 - y0) || 1);
  const share = data.variance_share.map((s) => `${Math.round(100 * s)}%`).join(" and ");
  $("map-caption").textContent = `The ${data.items.length} most-rated items on the first two principal components ` +
    `of the item factors (${share} of their variance). Hover a dot for its title, click it to open it.`;
  const byCount = [...data.items].sort((a, b) => b.n_ratings - a.n_ratings);
  const labeled = new Set(byCount.slice(0, 12).map((p) => p.item));
  mapPoints = new Map();
  const nodes = [];
  for (const p of data.items) {
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("cx", sx(p.x).toFixed(1));
    c.setAttribute("cy", sy(p.y).toFixed(1));
    c.setAttribute("r", (2 + Math.sqrt(p.n_ratings) / 8).toFixed(1));
    const t = document.createElementNS(SVG, "title");
    t.textContent = p.title || p.item;
    c.append(t);
    c.addEventListener("click", () => openItem(p.item, p.title));
    mapPoints.set(p.item, c);
    nodes.push(c);
  }
  for (const p of data.items.filter((q) => labeled.has(q.item))) {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", (sx(p.x) + 4).toFixed(1));
    t.setAttribute("y", (sy(p.y) - 3).toFixed(1));
    t.textContent = (p.title || p.item).replace(/\s*\(\d{4}\)$/, "");
    nodes.push(t);
  }
  svg.replaceChildren(...nodes);
}

function highlight(item, neighbours) {
  for (const [id, c] of mapPoints) {
    c.classList.toggle("selected", id === item);
    c.classList.toggle("neighbour", neighbours.includes(id));
    if (id === item || neighbours.includes(id)) c.parentNode.append(c);  // draw on top
  }
}

async function showModel() {
  try {
    const data = await api("readyz");
    const m = data.model;
    scale = m.rating_range;
    $("model-info").textContent = `${[m.kind, m.ranker].filter(Boolean).join(" + ")} model · ` +
      `${m.n_users} users · ${m.n_items} items · ` +
      `ratings ${m.rating_range[0]}–${m.rating_range[1]}`;
  } catch (e) { $("model-info").textContent = String(e.message); }
}

$("search-form").addEventListener("submit", search);
$("recommend").addEventListener("click", recommendForMe);
showModel();
drawMap();
