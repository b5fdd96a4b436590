// lsr-search console: plain JavaScript over the public REST API (no build step, no CDN).
// Every request goes through api(), which adds the session's API key as X-API-Key.
"use strict";

(() => {
  const KEY_STORAGE = "lsr-console-api-key";
  const LISTS = ["sparse", "bm25", "dense"];
  const RANK_DEPTH = 100;  // the pipeline's default first-stage depth per list
  const POLL_MS = 500;
  // shown without an explanation to say which query words to mark (BM25 drops these too)
  const STOPWORDS = new Set(("a an and are as at be but by for if in into is it no not of on or " +
    "such that the their then there these they this to was will with how do does what why which " +
    "who when where can").split(" "));

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  };

  const state = {
    collections: [],
    search: null,        // {body, results, ranks: Promise|null}
    jobs: new Map(),     // id -> job
    finished: new Set(), // ids of jobs seen in a final state
    pollTimer: null,
  };

  // ------------------------------------------------------------------ API and messages
  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
    }
  }

  const apiKey = () => sessionStorage.getItem(KEY_STORAGE) || "";

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const key = apiKey();
    if (key) headers["X-API-Key"] = key;
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: payload, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, `the server cannot be reached (${err.message})`);
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = text; }
    }
    if (!resp.ok) {
      const detail = data && typeof data === "object" && data.detail ? data.detail
        : (typeof data === "string" && data) || resp.statusText || "error";
      throw new ApiError(resp.status, String(detail));
    }
    return { data, resp };
  }

  function describeError(err, action) {
    if (!(err instanceof ApiError)) return `${action} failed: ${err.message || err}`;
    if (err.status === 401) {
      return apiKey()
        ? `The API key was not accepted (${err.detail}). Check it and enter it again in the API key field.`
        : `This server needs an API key: enter it in the API key field at the top (${err.detail}).`;
    }
    if (err.status === 403) return `Not allowed with this key (403): ${err.detail}`;
    if (err.status === 0) return `${action} failed: ${err.detail}`;
    return `${action} failed (${err.status}): ${err.detail}`;
  }

  function showMessage(text, kind = "error") {
    const box = $("message");
    box.textContent = text;
    box.className = `message ${kind}`;
    box.hidden = false;
  }

  function clearMessage() {
    const box = $("message");
    box.hidden = true;
    box.textContent = "";
  }

  function fail(err, action) {
    const text = describeError(err, action);
    showMessage(text);
    if (err instanceof ApiError && err.status === 401) {
      $("key-state").textContent = apiKey() ? "key rejected" : "a key is needed";
    }
    return text;
  }

  // ------------------------------------------------------------------ formatting
  const encodeName = (name) => encodeURIComponent(name);

  function formatBytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }

  function formatNumber(x, digits = 4) {
    if (x === null || x === undefined) return "–";
    if (Number.isInteger(x)) return x.toLocaleString("en");
    return Math.abs(x) >= 100 ? x.toFixed(1) : x.toPrecision(digits);
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    if (seconds < 60) return `${Math.round(seconds)} s`;
    const m = Math.floor(seconds / 60);
    if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function parseServerTiming(header) {
    const stages = {};
    for (const part of (header || "").split(",")) {
      const m = part.trim().match(/^([\w-]+)\s*;.*?dur=([\d.]+)/);
      if (m) stages[m[1]] = parseFloat(m[2]);
    }
    return stages;
  }

  // ------------------------------------------------------------------ API key
  function showKeyState() {
    $("key-state").textContent = apiKey() ? "key set for this session" : "no key";
  }

  async function useKey(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    $("api-key").value = "";
    showKeyState();
    clearMessage();
    if (await loadCollections()) {
      $("key-state").textContent = key ? "key accepted (kept for this browser session)" : "no key";
      loadJobs();
    }
  }

  async function forgetKey() {
    sessionStorage.removeItem(KEY_STORAGE);
    $("api-key").value = "";
    showKeyState();
    clearMessage();
    if (await loadCollections()) loadJobs();
  }

  // ------------------------------------------------------------------ pages
  function route() {
    const page = location.hash === "#collections" ? "collections" : "search";
    $("page-search").hidden = page !== "search";
    $("page-collections").hidden = page !== "collections";
    for (const p of ["search", "collections"]) {
      const link = $(`nav-${p}`);
      if (p === page) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    document.title = `${page === "search" ? "Search" : "Collections"} · lsr-search console`;
    if (page === "collections") { loadCollections(); loadJobs(); }
  }

  // ------------------------------------------------------------------ collections
  async function loadCollections() {
    let data;
    try {
      ({ data } = await api("GET", "collections"));
    } catch (err) {
      fail(err, "Listing the collections");
      return false;
    }
    state.collections = data.collections || [];
    fillCollectionSelects();
    renderCollections();
    updateSearchOptions();
    return true;
  }

  function fillCollectionSelects() {
    for (const id of ["collection", "upload-collection"]) {
      const select = $(id);
      const previous = select.value;
      select.replaceChildren();
      for (const c of state.collections) {
        const damaged = c.state === "damaged";
        select.append(el("option", { value: c.name, disabled: damaged },
          damaged ? `${c.name} (damaged)` : c.name));
      }
      if (!state.collections.length) select.append(el("option", { value: "", disabled: true }, "no collections"));
      if (state.collections.some((c) => c.name === previous)) select.value = previous;
      else {
        const ready = state.collections.find((c) => c.state !== "damaged");
        if (ready) select.value = ready.name;
      }
    }
  }

  function encoderSummary(c) {
    const parts = Object.entries(c.encoders || {}).filter(([, v]) => v).map(([k, v]) => `${k}: ${v}`);
    return parts.join(", ") || "–";
  }

  function renderCollections() {
    const body = $("collections-body");
    body.replaceChildren();
    if (!state.collections.length) {
      body.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No collections yet: create one above.")));
      return;
    }
    for (const c of state.collections) {
      const damaged = c.state === "damaged";
      const row = el("tr", { "data-collection": c.name, class: damaged ? "damaged" : null },
        el("th", { scope: "row" }, c.name),
        el("td", { class: `state ${damaged ? "bad" : "ok"}` }, c.state || "ready"),
        el("td", { class: "num documents" }, formatNumber(c.documents)),
        el("td", { class: "num" }, damaged ? "–" : formatNumber(c.segments)),
        el("td", { class: "num" }, damaged ? "–" : formatNumber(c.buffer_documents)),
        el("td", { class: "num" }, damaged ? "–" : formatNumber(c.tombstones)),
        el("td", { class: "num" }, damaged ? "–" : formatBytes(c.bytes)),
        el("td", { class: "encoders" }, damaged ? "–" : encoderSummary(c)));
      body.append(row);
      if (damaged && c.damage) {
        const d = c.damage;
        const where = [d.file, d.check].filter(Boolean).join(", ");
        body.append(el("tr", { class: "damage-report" },
          el("td", { colspan: 8 }, el("strong", {}, "Damage: "),
            where ? `${where}: ${d.message}` : d.message)));
      }
    }
  }

  async function createCollection(event) {
    event.preventDefault();
    const name = $("new-name").value.trim();
    clearMessage();
    try {
      await api("POST", "collections", { name });
    } catch (err) {
      fail(err, `Creating collection ${name}`);
      return;
    }
    $("new-name").value = "";
    await loadCollections();
    $("upload-collection").value = name;
  }

  // ------------------------------------------------------------------ search
  function selectedCollection() {
    return state.collections.find((c) => c.name === $("collection").value);
  }

  function availableLists(c) {
    return LISTS.filter((l) => c && c.fields && l in c.fields);
  }

  function updateSearchOptions() {
    const c = selectedCollection();
    const lists = availableLists(c);
    for (const option of $("mode").options) {
      option.disabled = option.value !== "hybrid" && c !== undefined && !lists.includes(option.value);
    }
    if ($("mode").selectedOptions[0] && $("mode").selectedOptions[0].disabled) $("mode").value = "hybrid";
    const canRerank = !c || Boolean(c.encoders && c.encoders.multivector);
    $("rerank").disabled = !canRerank;
    if (!canRerank) $("rerank").checked = false;
    $("fusion-fields").disabled = $("mode").value !== "hybrid";
  }

  function searchBody() {
    const mode = $("mode").value;
    const body = { query: $("query").value.trim(), k: parseInt($("k").value, 10) || 10, mode,
      explain: $("explain").checked, highlight: { fragments: 2, fragment_chars: 160 } };
    if (mode === "hybrid") {
      const method = $("fusion").value;
      const fusion = { method };
      const alphaText = $("alpha").value.trim();
      if (alphaText !== "") {
        const alpha = Math.min(1, Math.max(0, parseFloat(alphaText)));
        if (method === "convex") fusion.alpha = alpha;
        else fusion.weights = hybridWeights(availableLists(selectedCollection()), alpha);
      }
      body.fusion = fusion;
    }
    if ($("rerank").checked) body.rerank = {};
    if ($("prf").checked) body.prf = {};
    return body;
  }

  // α for the dense list, 1 − α shared by the lexical lists (the server's convex rule)
  function hybridWeights(lists, alpha) {
    const lexical = lists.filter((l) => l !== "dense");
    const w = {};
    for (const l of lexical) w[l] = (1 - alpha) / lexical.length;
    if (lists.includes("dense")) w.dense = lexical.length ? alpha : 1;
    return w;
  }

  async function runSearch(event) {
    if (event) event.preventDefault();
    const name = $("collection").value;
    const body = searchBody();
    if (!name || !body.query) return;
    clearMessage();
    const status = $("search-status");
    status.textContent = "Searching…";
    $("search-button").disabled = true;
    const t0 = performance.now();
    let data, resp;
    try {
      ({ data, resp } = await api("POST", `collections/${encodeName(name)}/search`, body));
    } catch (err) {
      status.textContent = fail(err, "The search");
      $("results").replaceChildren();
      return;
    } finally {
      $("search-button").disabled = false;
    }
    const roundTrip = performance.now() - t0;
    state.search = { name, body, results: data.results, ranks: null, explanations: null };
    const stages = parseServerTiming(resp.headers.get("Server-Timing"));
    const parts = Object.entries(stages).filter(([k]) => k !== "total")
      .map(([k, v]) => `${k} ${v.toFixed(1)}`);
    const server = stages.total !== undefined
      ? `server ${stages.total.toFixed(1)} ms${parts.length ? ` (${parts.join(" · ")})` : ""}`
      : "server time not reported";
    status.replaceChildren(
      `${data.results.length} result${data.results.length === 1 ? "" : "s"} of ${data.candidates} candidates · `,
      el("span", { id: "server-time", title: "from the Server-Timing header" }, server),
      ` · round trip ${roundTrip.toFixed(0)} ms`);
    renderResults(data);
  }

  function queryWords(query) {
    return new Set((query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []));
  }

  // Words to mark: the query terms that scored ("q") and SPLADE expansion terms ("x").
  function markTerms(query, explanation) {
    const words = queryWords(query);
    const q = new Set();
    const x = new Set();
    const scored = [];
    for (const list of ["sparse", "bm25"]) {
      for (const t of (explanation && explanation[list] && explanation[list].terms) || []) {
        const term = t.term.toLowerCase();
        if (term.startsWith("##") || /^\[.*\]$/.test(term) || !/[\p{L}\p{N}]/u.test(term)) continue;
        scored.push(term);
        if (words.has(term)) q.add(term);
        else if (list === "sparse") x.add(term);
      }
    }
    if (!scored.length) for (const w of words) if (!STOPWORDS.has(w)) q.add(w);
    return { q, x };
  }

  function classOf(word, marks) {
    const w = word.toLowerCase();
    const hit = (terms) => terms.has(w) || [...terms].some((t) => t.length >= 4 && w.startsWith(t));
    if (hit(marks.q)) return "q";
    if (hit(marks.x)) return "x";
    return null;
  }

  function highlighted(text, marks) {
    const p = el("p", { class: "text" });
    let last = 0;
    for (const m of text.matchAll(/[\p{L}\p{N}]+/gu)) {
      const cls = classOf(m[0], marks);
      if (!cls) continue;
      p.append(text.slice(last, m.index));
      p.append(el("mark", { class: cls, title: cls === "x" ? "expansion term (not in the query)" : "query term" }, m[0]));
      last = m.index + m[0].length;
    }
    p.append(text.slice(last));
    return p;
  }

  // The server's highlights: fragments with [start, end) offsets in code points. Built from
  // text nodes and <mark> elements (never innerHTML), so the document's text cannot inject markup.
  function fragmentList(highlights, fullText) {
    if (!highlights || !highlights.length) return null;
    const total = Array.from(fullText).length;
    if (highlights.length === 1 && Array.from(highlights[0].text).length === total) return null;
    const p = el("p", { class: "fragments", title: "the passages that carry the top contributing terms" });
    for (const h of highlights) {
      const chars = Array.from(h.text);
      const span = el("span", { class: "fragment" }, h.start > 0 ? "…" : "");
      let last = 0;
      for (const [a, b] of h.matches) {
        span.append(chars.slice(last, a).join(""), el("mark", { class: "q" }, chars.slice(a, b).join("")));
        last = b;
      }
      span.append(chars.slice(last).join(""), h.start + chars.length < total ? "…" : "");
      p.append(span);
    }
    return p;
  }

  function metadataList(meta) {
    if (!meta || !Object.keys(meta).length) return null;
    const dl = el("dl", { class: "meta" });
    for (const [k, v] of Object.entries(meta)) {
      dl.append(el("div", {}, el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))));
    }
    return dl;
  }

  function renderResults(data) {
    const list = $("results");
    list.replaceChildren();
    if (!data.results.length) {
      list.append(el("li", { class: "muted" }, "No results."));
      return;
    }
    const query = state.search.body.query;
    data.results.forEach((r, i) => {
      const rank = data.offset + i + 1;
      const panelId = `explanation-${i}`;
      const button = el("button", { type: "button", class: "explain-btn", "aria-expanded": "false",
        "aria-controls": panelId }, "Explain score");
      const panel = el("div", { class: "explanation", id: panelId, hidden: true });
      button.addEventListener("click", () => toggleExplanation(i, button, panel));
      const badges = i < data.reranked ? el("span", { class: "badge", title: "ordered by MaxSim rerank" }, "reranked") : null;
      list.append(el("li", { class: "result", "data-id": r.id },
        el("div", { class: "result-head" },
          el("span", { class: "rank" }, `${rank}.`),
          el("span", { class: "doc-id" }, r.id),
          el("span", { class: "score" }, `score ${formatNumber(r.score)}`), badges),
        highlighted(r.text || "", markTerms(query, r.explanation)),
        fragmentList(r.highlights, r.text || ""),
        metadataList(r.metadata),
        button, panel));
    });
  }

  async function toggleExplanation(i, button, panel) {
    const open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", String(!open));
    button.textContent = open ? "Explain score" : "Hide explanation";
    panel.hidden = open;
    if (open || panel.dataset.loaded) return;
    panel.dataset.loaded = "1";
    panel.replaceChildren(el("p", { class: "muted" }, "Loading the explanation…"));
    const search = state.search;
    try {
      const explanation = await explanationOf(search, i);
      // servers that explain ranks and each list's best score need no extra searches
      const ranks = explanation.ranks && explanation.best ? null : await listRanks(search);
      panel.replaceChildren(...explanationView(search, search.results[i], explanation, ranks));
    } catch (err) {
      delete panel.dataset.loaded;
      panel.replaceChildren(el("p", { class: "error-text" }, describeError(err, "The explanation")));
    }
  }

  // The search's own explanation; without "Explain" ticked, the same search again with it.
  async function explanationOf(search, i) {
    if (search.results[i].explanation) return search.results[i].explanation;
    if (!search.explanations) {
      search.explanations = api("POST", `collections/${encodeName(search.name)}/search`,
        { ...search.body, explain: true }).then(({ data }) => new Map(data.results.map((r) => [r.id, r.explanation])));
    }
    return (await search.explanations).get(search.results[i].id) || {};
  }

  // Each list's own ranking (the lists fusion starts from), asked once per search: the same
  // query, filter and PRF in one mode, without rerank, as deep as the pipeline's first stage.
  function listRanks(search) {
    if (!search.ranks) {
      const lists = search.body.mode === "hybrid" ? availableLists(state.collections.find((c) => c.name === search.name))
        : [search.body.mode];
      search.ranks = Promise.all(lists.map(async (list) => {
        const body = { query: search.body.query, mode: list, k: RANK_DEPTH };
        if (search.body.prf) body.prf = search.body.prf;
        if (search.body.filter) body.filter = search.body.filter;
        try {
          const { data } = await api("POST", `collections/${encodeName(search.name)}/search`, body);
          return [list, { ids: data.results.map((r) => r.id), top: data.results.length ? data.results[0].score : null }];
        } catch {
          return [list, null];
        }
      })).then((pairs) => Object.fromEntries(pairs));
    }
    return search.ranks;
  }

  function barRow(label, value, max, note) {
    const width = max > 0 && value > 0 ? Math.max(1, Math.min(100, (100 * value) / max)) : 0;
    const bar = el("span", { class: "bar" });
    bar.style.width = `${width.toFixed(1)}%`;  // CSSOM: the page's CSP allows no style attributes
    return el("div", { class: "bar-row", role: "listitem" },
      el("span", { class: "bar-label", title: label }, label),
      el("span", { class: "bar-track", "aria-hidden": "true" }, bar),
      el("span", { class: "bar-value" }, note));
  }

  function explanationView(search, result, explanation, ranks) {
    const out = [];
    const scores = explanation.scores || {};
    const lists = Object.keys(ranks || {}).length ? Object.keys(ranks) : Object.keys(explanation.best || scores);
    const chart = el("div", { class: "chart", role: "list", "aria-label": "Each list before fusion" });
    for (const list of lists) {
      const score = scores[list];
      const known = ranks && ranks[list];
      let rank = explanation.ranks && explanation.ranks[list];
      if (rank === undefined && known) {
        const at = known.ids.indexOf(result.id);
        rank = at >= 0 ? at + 1 : null;
      }
      const rankText = rank ? `rank ${rank}` : score === undefined ? `not in its top ${RANK_DEPTH}` : "rank ?";
      const best = explanation.best && explanation.best[list];
      const top = best !== undefined ? best : known && known.top !== null ? known.top : score;
      chart.append(barRow(list, score === undefined ? 0 : score, top,
        score === undefined ? rankText : `${rankText} · score ${formatNumber(score)}`));
    }
    out.push(el("h4", {}, "Lists before fusion", el("span", { class: "muted small" }, " (bar: score ÷ the list's best)")), chart);
    for (const [list, title] of [["sparse", "Sparse (SPLADE) terms"], ["bm25", "BM25 terms"]]) {
      const part = explanation[list];
      if (!part || !part.terms || !part.terms.length) continue;
      const max = Math.max(...part.terms.map((t) => t.contribution));
      const terms = el("div", { class: "chart terms", role: "list", "aria-label": title });
      for (const t of part.terms) {
        terms.append(barRow(t.term, t.contribution, max,
          `${formatNumber(t.contribution, 3)} = ${formatNumber(t.query_weight, 3)} × ${formatNumber(t.doc_weight, 3)}`));
      }
      out.push(el("h4", {}, `${title}: score ${formatNumber(part.score)}`,
        el("span", { class: "muted small" }, " (contribution = query weight × document weight)")), terms);
    }
    if (out.length === 2 && !lists.length) out.splice(0, 2, el("p", { class: "muted" }, "No explanation for this result."));
    return out;
  }

  // ------------------------------------------------------------------ jobs
  async function uploadFile(event) {
    event.preventDefault();
    const name = $("upload-collection").value;
    const file = $("upload-file").files[0];
    if (!name || !file) return;
    clearMessage();
    const form = new FormData();
    form.append("file", file, file.name);
    $("upload-button").disabled = true;
    try {
      const { data } = await api("POST", `collections/${encodeName(name)}/jobs/upload`, form);
      state.jobs.set(data.id, data);
      renderJobs();
      $("upload-file").value = "";
      schedulePoll();
    } catch (err) {
      fail(err, `Uploading ${file.name}`);
    } finally {
      $("upload-button").disabled = false;
    }
  }

  const ACTIVE = new Set(["queued", "running", "cancelling"]);

  async function loadJobs() {
    try {
      const { data } = await api("GET", "jobs");
      for (const job of data.jobs || []) state.jobs.set(job.id, job);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return;  // said already
      fail(err, "Listing the jobs");
      return;
    }
    renderJobs();
    schedulePoll();
  }

  function schedulePoll() {
    if (state.pollTimer !== null) return;
    if (![...state.jobs.values()].some((j) => ACTIVE.has(j.status))) return;
    state.pollTimer = setTimeout(pollJobs, POLL_MS);
  }

  async function pollJobs() {
    state.pollTimer = null;
    const active = [...state.jobs.values()].filter((j) => ACTIVE.has(j.status));
    let finished = false;
    await Promise.all(active.map(async (job) => {
      try {
        const { data } = await api("GET", `jobs/${encodeURIComponent(job.id)}`);
        state.jobs.set(data.id, data);
        if (!ACTIVE.has(data.status)) finished = true;
      } catch (err) {
        fail(err, "Following the job");
      }
    }));
    renderJobs();
    if (finished) loadCollections();
    schedulePoll();
  }

  async function cancelJob(id) {
    try {
      await api("DELETE", `jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      fail(err, "Cancelling the job");
      return;
    }
    const job = state.jobs.get(id);
    if (job && ACTIVE.has(job.status)) job.status = "cancelling";
    renderJobs();
    schedulePoll();
  }

  function jobNumbers(job) {
    const parts = [job.total === null || job.total === undefined
      ? `${formatNumber(job.done)} documents`
      : `${formatNumber(job.done)} / ${formatNumber(job.total)} documents`];
    if (job.rate) parts.push(`${job.rate.toFixed(1)} docs/s`);
    if (job.eta !== null && job.eta !== undefined && ACTIVE.has(job.status)) parts.push(`ETA ${formatDuration(job.eta)}`);
    return parts.join(" · ");
  }

  function renderJobs() {
    const list = $("jobs");
    const jobs = [...state.jobs.values()].reverse();
    $("jobs-empty").hidden = jobs.length > 0;
    const existing = new Map([...list.children].map((li) => [li.dataset.id, li]));
    let previous = null;
    for (const job of jobs) {
      let li = existing.get(job.id);
      if (!li) {
        li = el("li", { class: "job", "data-id": job.id },
          el("div", { class: "job-head" },
            el("strong", {}, job.collection), ` ← ${job.source} (${job.format}) · `,
            el("span", { class: "job-status" })),
          el("progress", { "aria-label": `Progress of indexing ${job.source} into ${job.collection}` }),
          el("span", { class: "job-numbers" }),
          el("p", { class: "error-text job-error", hidden: true }));
        const cancel = el("button", { type: "button", class: "job-cancel" }, "Cancel");
        cancel.addEventListener("click", () => cancelJob(job.id));
        li.querySelector(".job-head").append(" ", cancel);
      }
      li.querySelector(".job-status").textContent = job.status;
      li.dataset.status = job.status;
      const bar = li.querySelector("progress");
      if (job.total) {
        bar.max = job.total;
        bar.value = Math.min(job.done, job.total);
      } else if (job.status === "done") {
        bar.max = 1;
        bar.value = 1;
      } else {
        bar.removeAttribute("value");  // indeterminate until the total is known
      }
      li.querySelector(".job-numbers").textContent = jobNumbers(job);
      li.querySelector(".job-cancel").hidden = !ACTIVE.has(job.status) || job.status === "cancelling";
      const error = li.querySelector(".job-error");
      error.hidden = !job.error;
      error.textContent = job.error ? `Failed: ${job.error}` : "";
      if (previous ? previous.nextSibling !== li : list.firstChild !== li) {
        if (previous) previous.after(li); else list.prepend(li);
      }
      previous = li;
    }
  }

  // ------------------------------------------------------------------ start
  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", useKey);
    $("key-forget").addEventListener("click", forgetKey);
    $("search-form").addEventListener("submit", runSearch);
    $("collection").addEventListener("change", updateSearchOptions);
    $("mode").addEventListener("change", updateSearchOptions);
    $("refresh-collections").addEventListener("click", () => { clearMessage(); loadCollections(); });
    $("create-form").addEventListener("submit", createCollection);
    $("upload-form").addEventListener("submit", uploadFile);
    window.addEventListener("hashchange", route);
    showKeyState();
    route();
    if (location.hash !== "#collections") loadCollections().then((ok) => { if (ok) loadJobs(); });
  });
})();
