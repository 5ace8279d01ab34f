// The console: a framework-free page over API v1. The API key lives in this tab's sessionStorage
// and travels only in the Authorization header (images are fetched with it and shown as blob URLs).

const KEY = "cfd-api-key";
const VERDICTS = ["genuine", "suspicious", "counterfeit", "unverifiable"];
const COLOURS = { genuine: "#1b6e2e", suspicious: "#8a5300", counterfeit: "#b00020", unverifiable: "#555555" };
const $ = (selector, root = document) => root.querySelector(selector);
let me = null;

// --- a tiny DOM builder: h("tag.class", {attr: value}, ...children) ---
function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag);
  if (classes.length) node.className = classes.join(" ");
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function status(text) { $("#status").textContent = text; }

// --- the API ---
async function api(path, { method = "GET", json, body } = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: json !== undefined ? JSON.stringify(json) : body });
  if (response.status === 401 && me) { signOut("Your key is no longer valid; sign in again."); }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response.status === 204 ? null : response.json();
}

async function imageURL(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` } });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return URL.createObjectURL(await response.blob());
}

function image(path, alt) {
  const img = h("img", { alt });
  imageURL(path).then((url) => { img.src = url; }).catch(() => { img.alt = `${alt} (unavailable)`; });
  return img;
}

async function allBrands() { return (await api("/v1/brands")).brands; }

function brandSelect(brands, id, { any = false } = {}) {
  return h("select", { id, name: id },
    any ? h("option", { value: "" }, "every brand") : null,
    brands.map((b) => h("option", { value: b.brand }, b.display_name === b.brand ? b.brand : `${b.display_name} (${b.brand})`)));
}

function verdictBadge(verdict) { return h("span.verdict." + verdict, {}, verdict); }

// --- sign in / out ---
async function signIn(event) {
  event.preventDefault();
  const key = $("#key").value.trim();
  sessionStorage.setItem(KEY, key);
  try {
    me = await api("/v1/me");
  } catch (error) {
    sessionStorage.removeItem(KEY);
    $("#signin-error").textContent = `Sign-in failed: ${error.message}`;
    return;
  }
  start();
}

function signOut(message = "Signed out.") {
  sessionStorage.removeItem(KEY);
  me = null;
  history.replaceState(null, "", "/console");
  $("#nav").hidden = true;
  window.removeEventListener("hashchange", route);
  $("#view").replaceChildren(signInForm);
  $("#key").value = "";
  status(message);
}

function start() {
  $("#nav").hidden = false;
  $("#who").textContent = `${me.role} key ${me.key_id}` + (me.brand ? ` (${me.brand})` : "");
  for (const link of document.querySelectorAll("[data-needs=review]")) link.hidden = me.role === "pipeline";
  window.addEventListener("hashchange", route);
  if (!location.hash || location.hash === "#") location.hash = "#/brands";
  else route();
}

const VIEWS = [
  [/^#\/brands\/([a-z0-9-]+)$/, (m) => galleryView(m[1])],
  [/^#\/brands$/, () => brandsView()],
  [/^#\/check$/, () => checkView()],
  [/^#\/review$/, () => reviewView()],
  [/^#\/dashboard$/, () => dashboardView()],
];

async function route() {
  const main = $("#view");
  for (const link of document.querySelectorAll("nav a")) {
    if (location.hash.startsWith(link.getAttribute("href"))) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const match = VIEWS.map(([pattern, view]) => [location.hash.match(pattern), view]).find(([m]) => m);
  main.replaceChildren(h("p", {}, "Loading…"));
  try {
    main.replaceChildren(...await (match ? match[1](match[0]) : brandsView()));
  } catch (error) {
    main.replaceChildren(h("p.error", { role: "alert" }, error.message));
  }
  main.focus();
}

// --- brands and references ---
async function brandsView() {
  const brands = await allBrands();
  const rows = brands.map((b) => h("tr", {}, h("td", {}, h("a", { href: `#/brands/${b.brand}` }, b.brand)),
    h("td", {}, b.display_name), h("td", {}, b.reference_count)));
  const parts = [h("h2", {}, "Brands"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Brand"), h("th", { scope: "col" }, "Name"),
      h("th", { scope: "col" }, "References"))), h("tbody", {}, rows))];
  if (me.role === "admin") {
    const form = h("form.card", { onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api("/v1/brands", { method: "POST", json: { brand: $("#new-brand").value, display_name: $("#new-name").value || null } });
        status(`Brand ${$("#new-brand").value} created.`);
        route();
      } catch (error) { status(`Could not create the brand: ${error.message}`); }
    } }, h("h3", {}, "New brand"), h("label", { for: "new-brand" }, "Slug"),
    h("input", { id: "new-brand", required: true, pattern: "[a-z0-9][a-z0-9\\-]{0,63}" }),
    h("label", { for: "new-name" }, "Display name"), h("input", { id: "new-name" }), " ", h("button", { type: "submit" }, "Create"));
    parts.push(form);
  }
  return parts;
}

function dropZone(id, label, onFiles, { multiple = true } = {}) {
  const input = h("input", { id, type: "file", accept: "image/*", multiple });
  const zone = h("label.dropzone", { for: id }, label, input);
  input.addEventListener("change", () => onFiles([...input.files]));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    onFiles([...event.dataTransfer.files]);
  });
  return zone;
}

function uploadOne(brand, file, onProgress) {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", `/v1/brands/${brand}/references`);
    request.setRequestHeader("Authorization", `Bearer ${sessionStorage.getItem(KEY)}`);
    request.upload.addEventListener("progress", (event) => onProgress(event.loaded));
    request.addEventListener("load", () => {
      let message = `${request.status}`;
      try { message = JSON.parse(request.responseText).error?.message ?? message; } catch (_) { /* not JSON */ }
      resolve(request.status === 201 ? { ok: true, reference: JSON.parse(request.responseText).references[0] } : { ok: false, message });
    });
    request.addEventListener("error", () => resolve({ ok: false, message: "the connection failed" }));
    const form = new FormData();
    form.append("files", file, file.name);
    request.send(form);
  });
}

async function galleryView(brand) {
  const canWrite = me.role === "admin" || me.brand === brand;
  const grid = h("div.grid", { id: "gallery" });
  let after = null;
  do {
    const page = await api(`/v1/brands/${brand}/references?limit=200` + (after ? `&after=${after}` : ""));
    for (const reference of page.references) grid.append(referenceFigure(brand, reference, canWrite));
    after = page.next;
  } while (after);
  const parts = [h("h2", {}, `${brand}: reference photos`), h("p", {}, h("a", { href: "#/brands" }, "← all brands"))];
  if (canWrite) {
    const bar = h("progress", { id: "upload-progress", max: 1, value: 0, "aria-label": "upload progress" });
    const results = h("ul", { id: "upload-results", "aria-live": "polite" });
    parts.push(dropZone("upload-files", "Drop authentic photos here, or choose files", async (files) => {
      const total = files.reduce((sum, f) => sum + f.size, 0) || 1;
      const sent = new Array(files.length).fill(0);
      bar.max = total;
      results.replaceChildren();
      let stored = 0;
      for (const [i, file] of files.entries()) {  // one request per file: each gets its own answer
        const outcome = await uploadOne(brand, file, (loaded) => { sent[i] = loaded; bar.value = sent.reduce((a, b) => a + b, 0); });
        sent[i] = file.size;
        bar.value = sent.reduce((a, b) => a + b, 0);
        if (outcome.ok) {
          stored += 1;
          results.append(h("li", {}, `${file.name}: ${outcome.reference.duplicate ? "already a reference" : "uploaded"}`));
          if (!outcome.reference.duplicate) grid.prepend(referenceFigure(brand, outcome.reference, canWrite));
        } else {
          results.append(h("li.error", {}, `${file.name}: ${outcome.message}`));
        }
      }
      status(`${stored} of ${files.length} photo(s) stored.`);
    }), bar, results);
  }
  parts.push(grid);
  return parts;
}

function referenceFigure(brand, reference, canWrite) {
  const figure = h("figure", { "data-id": reference.id },
    image(`/v1/brands/${brand}/references/${reference.id}/thumbnail`, `reference ${reference.id}`));
  const remove = canWrite ? h("button.danger", { type: "button", "aria-label": `Delete reference ${reference.id}`, onclick: async () => {
    if (!confirm(`Delete reference ${reference.id} of ${brand}?`)) return;
    try {
      await api(`/v1/brands/${brand}/references/${reference.id}`, { method: "DELETE" });
      figure.remove();
      status(`Reference ${reference.id} deleted.`);
    } catch (error) { status(`Could not delete: ${error.message}`); }
  } }, "Delete") : null;
  figure.append(h("figcaption", {}, `#${reference.id}`, remove));
  return figure;
}

// --- checking a listing ---
async function checkView() {
  const brands = await allBrands();
  let files = [];
  const chosen = h("p", { id: "chosen" }, "No photos chosen.");
  const result = h("section", { id: "result", "aria-live": "polite" });
  const form = h("form.card", { onsubmit: async (event) => {
    event.preventDefault();
    if (!files.length) { status("Choose at least one photo."); return; }
    const body = new FormData();
    for (const file of files) body.append("files", file, file.name);
    if ($("#check-brand").value) body.append("brand", $("#check-brand").value);
    if ($("#listing-id").value) body.append("listing_id", $("#listing-id").value);
    status("Checking…");
    try {
      const answer = await api("/v1/check", { method: "POST", body });
      result.replaceChildren(...renderResult(answer, files));
      status(`Check ${answer.check_id}: ${answer.verdict}.`);
    } catch (error) { result.replaceChildren(h("p.error", { role: "alert" }, error.message)); status("The check failed."); }
  } },
  h("h2", {}, "Check a listing"),
  dropZone("check-files", "Drop the listing's photos here, or choose files", (chosenFiles) => {
    files = chosenFiles;
    chosen.textContent = `${files.length} photo(s): ${files.map((f) => f.name).join(", ")}`;
  }), chosen,
  h("label", { for: "check-brand" }, "Claimed brand"), brandSelect(brands, "check-brand"),
  h("label", { for: "listing-id" }, "Listing id (optional)"), h("input", { id: "listing-id" }), " ",
  h("button", { type: "submit" }, "Check"));
  return [form, result];
}

function renderResult(answer, files) {
  const parts = [h("h3", {}, "Verdict: ", verdictBadge(answer.verdict)),
    h("p", {}, `Counterfeit score ${answer.counterfeit_score ?? "–"}` +
      (answer.calibration ? `; thresholds ${answer.calibration.suspicious_threshold.toFixed(3)} / ` +
        `${answer.calibration.counterfeit_threshold.toFixed(3)} (${answer.calibration.scope}'s)` : "") + `; check ${answer.check_id}`),
    h("ul", { id: "reasons" }, answer.reasons.map((r) => h("li", {}, r)))];
  for (const photo of answer.images) {
    const local = files[photo.index] ? URL.createObjectURL(files[photo.index]) : null;
    const shown = h("img", { src: local, alt: `listing photo ${photo.index}` });
    const aligned = photo.alignment && photo.alignment.aligned;
    const toggle = aligned ? h("label", {}, h("input", { type: "checkbox", id: `heatmap-${photo.index}`, onchange: async (event) => {
      shown.src = event.target.checked ? await imageURL(`/v1/checks/${answer.check_id}/photos/${photo.index}/heatmap`) : local;
      shown.alt = event.target.checked ? `heatmap of listing photo ${photo.index}` : `listing photo ${photo.index}`;
    } }), " show where it differs (heatmap)") : h("p.hint", {}, "No heatmap: the photo did not align with a reference.");
    parts.push(h("div.pair", {},
      h("div.photo", {}, h("h4", {}, `Photo ${photo.index} `, photo.flags.length ? `(${photo.flags.join(", ")})` : ""), shown, toggle),
      h("div", {}, h("h4", {}, "Nearest references"), h("div.refs", {}, photo.nearest_references.map((ref) =>
        h("figure", {}, image(`/v1/brands/${ref.brand}/references/${ref.id}/thumbnail`, `reference ${ref.id} of ${ref.brand}`),
          h("figcaption", {}, `${ref.brand} #${ref.id}`, h("span", {}, ref.similarity.toFixed(2)))))))));
  }
  return parts;
}

// --- the review queue ---
async function reviewView() {
  const brands = await allBrands();
  const filter = brandSelect(brands, "queue-brand", { any: me.role === "admin" });
  const list = h("div.queue", { id: "queue" });
  const load = async () => {
    const brand = filter.value ? `&brand=${filter.value}` : "";
    const page = await api(`/v1/checks?verdict=suspicious,counterfeit&decision=undecided&limit=50${brand}`);
    list.replaceChildren(...page.checks.map(queueItem));
    if (!page.checks.length) list.append(h("p", { id: "queue-empty" }, "Nothing to review."));
  };
  filter.addEventListener("change", load);
  list.addEventListener("keydown", (event) => {
    const item = event.target.closest("article");
    if (!item || event.target.tagName === "BUTTON" && (event.key === "Enter" || event.key === " ")) return;
    const move = { j: "nextElementSibling", ArrowDown: "nextElementSibling", k: "previousElementSibling", ArrowUp: "previousElementSibling" }[event.key];
    if (move && item[move]) { event.preventDefault(); item[move].focus(); }
    if (event.key === "g" || event.key === "c") { event.preventDefault(); decide(item, event.key === "g" ? "genuine" : "counterfeit"); }
  });
  await load();
  return [h("h2", {}, "Review queue"),
    h("p.hint", {}, "Suspicious and counterfeit checks nobody has decided, newest first. Keys: j / k (or arrows) move, ",
      "g marks genuine, c marks counterfeit."),
    h("label", { for: "queue-brand" }, "Brand"), filter, list];
}

function queueItem(check) {
  const result = check.result;
  const item = h("article", { tabindex: 0, "data-check": check.id, "aria-label": `check ${check.id}, ${check.verdict}, ${check.brand}` },
    h("div", {}, result.images.map((photo) => image(`/v1/checks/${check.id}/photos/${photo.index}/thumbnail`, `check ${check.id} photo ${photo.index}`))),
    h("div", {}, h("p", {}, verdictBadge(check.verdict), ` score ${check.counterfeit_score ?? "–"} · ${check.brand} · `,
      check.listing_id ? `listing ${check.listing_id} · ` : "", `check ${check.id} · ${check.created_at}`),
    h("ul", {}, result.reasons.map((r) => h("li", {}, r))),
    h("div.actions", {},
      h("button.secondary", { type: "button", onclick: () => decide(item, "genuine") }, "Genuine (g)"),
      h("button.danger", { type: "button", onclick: () => decide(item, "counterfeit") }, "Counterfeit (c)"))));
  return item;
}

async function decide(item, decision) {
  const id = item.dataset.check;
  try {
    await api(`/v1/checks/${id}/decision`, { method: "POST", json: { decision } });
  } catch (error) { status(`Could not record the decision: ${error.message}`); return; }
  const next = item.nextElementSibling || item.previousElementSibling;
  item.remove();
  if (next) next.focus();
  status(`Check ${id} decided ${decision}.`);
}

// --- the brand dashboard ---
async function dashboardView() {
  const brands = await allBrands();
  const pick = brandSelect(brands, "dash-brand");
  const body = h("section", { id: "dashboard" });
  const load = async () => { body.replaceChildren(...renderStats(await api(`/v1/brands/${pick.value}/stats?days=30`))); };
  pick.addEventListener("change", load);
  if (brands.length) await load();
  return [h("h2", {}, "Brand dashboard"), h("label", { for: "dash-brand" }, "Brand"), pick, body];
}

function renderStats(stats) {
  const svgNS = "http://www.w3.org/2000/svg";
  const width = 720, height = 220, pad = 30;
  // every day of the window, so that bars keep one width and quiet days show as gaps
  const counted = Object.fromEntries(stats.days.map((d) => [d.date, d]));
  const days = Array.from({ length: 30 }, (_, i) => {
    const date = new Date(Date.now() - (29 - i) * 86400000).toISOString().slice(0, 10);
    return counted[date] ?? { date, genuine: 0, suspicious: 0, counterfeit: 0, unverifiable: 0 };
  });
  const most = Math.max(1, ...days.map((d) => VERDICTS.reduce((sum, v) => sum + d[v], 0)));
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `checks per day by verdict, ${stats.days.length} of the last 30 days with checks`);
  const step = (width - pad) / Math.max(days.length, 1);
  days.forEach((day, i) => {
    let top = height - pad;
    for (const verdict of VERDICTS) {
      const bar = (day[verdict] / most) * (height - 2 * pad);
      if (!bar) continue;
      const rect = document.createElementNS(svgNS, "rect");
      Object.entries({ x: pad + i * step + 2, y: top - bar, width: Math.max(step - 4, 2), height: bar, fill: COLOURS[verdict] })
        .forEach(([k, v]) => rect.setAttribute(k, v));
      const title = document.createElementNS(svgNS, "title");
      title.textContent = `${day.date}: ${day[verdict]} ${verdict}`;
      rect.append(title);
      svg.append(rect);
      top -= bar;
    }
    const label = document.createElementNS(svgNS, "text");
    const last = i === days.length - 1;
    Object.entries({ x: pad + i * step + (last ? step : step / 2), y: height - 10, "text-anchor": last ? "end" : "middle", "font-size": 10 })
      .forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = day.date.slice(5);
    if (i % 5 === 4 && i < days.length - 3 || last) svg.append(label);  // a date every five days
  });
  const axis = document.createElementNS(svgNS, "text");
  Object.entries({ x: 2, y: pad - 8, "font-size": 10 }).forEach(([k, v]) => axis.setAttribute(k, v));
  axis.textContent = `max ${most}/day`;
  svg.append(axis);
  const c = stats.calibration;
  return [
    h("h3", {}, "Checks per day (last 30 days)"), svg,
    h("p.legend", {}, VERDICTS.map((v) => h("span", {}, h("i." + `swatch-${v}`, { "aria-hidden": "true" }), v))),
    h("table.visually-hidden", {}, h("caption", {}, "checks per day"), stats.days.map((d) => h("tr", {}, h("th", { scope: "row" }, d.date),
      VERDICTS.map((v) => h("td", {}, `${d[v]} ${v}`))))),
    h("h3", {}, "What reviewers decided"),
    h("table", { id: "outcomes" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Verdict"), h("th", { scope: "col" }, "Decided genuine"),
      h("th", { scope: "col" }, "Decided counterfeit"), h("th", { scope: "col" }, "Undecided"))),
    h("tbody", {}, VERDICTS.map((v) => h("tr", {}, h("th", { scope: "row" }, v), h("td", {}, stats.outcomes[v].genuine),
      h("td", {}, stats.outcomes[v].counterfeit), h("td", {}, stats.outcomes[v].undecided))))),
    h("h3", {}, "Thresholds now"),
    h("p", { id: "thresholds" }, `${c.scope === "brand" ? "The brand's own" : "The model's"}: suspicious from ${c.suspicious_threshold.toFixed(3)}, ` +
      `counterfeit from ${c.counterfeit_threshold.toFixed(3)}` + (c.source ? ` (fitted on ${c.genuine_photos} genuine photos, ${c.source}, ${c.fitted_at})` : "") + "."),
  ];
}

// --- boot ---
let signInForm = null;

document.addEventListener("DOMContentLoaded", async () => {
  signInForm = $("#signin");
  signInForm.addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => signOut());
  if (sessionStorage.getItem(KEY)) {
    try { me = await api("/v1/me"); start(); } catch (_) { sessionStorage.removeItem(KEY); }
  }
});
