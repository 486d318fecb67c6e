// plughost dashboard: calls the JSON API with the key kept in sessionStorage.
// Text from the API (plugin descriptions, messages, errors, log lines) is set with
// textContent or appended as text nodes, never parsed as HTML.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = "plughost.key", NS = "plughost.ns";
  const PROGRESS = { queued: 10, pending: 35, in_progress: 70, deployed: 100, failed: 100 };
  const FINAL = new Set(["deployed", "failed", "not_deployed"]);
  const state = { ns: null, plugins: [], statuses: {}, selected: null, watch: null, timer: null };

  class ApiError extends Error {}

  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + sessionStorage.getItem(KEY) };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { ...options, headers });
    if (resp.status === 401) { signOut("The key was refused."); throw new ApiError("signed out"); }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new ApiError((body.error && body.error.message) || resp.statusText);
    return body;
  }
  const nsPath = (rest) => `/v1/namespaces/${encodeURIComponent(state.ns)}${rest}`;
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    Object.entries(attrs).forEach(([k, v]) => (k === "class" ? (node.className = v) : node.setAttribute(k, v)));
    children.forEach((c) => node.append(c));
    return node;
  };
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
  const fmt = (v, unit = "") => (v === null || v === undefined ? "-" : `${Math.round(v * 100) / 100}${unit}`);

  // -- sign in -------------------------------------------------------------------------------
  async function signIn(key) {
    sessionStorage.setItem(KEY, key);
    try {
      const body = await api("/v1/namespaces");
      const select = $("ns");
      select.replaceChildren(...body.namespaces.map((n) => el("option", { value: n.namespace_id }, n.namespace_id)));
      const saved = sessionStorage.getItem(NS);
      if (saved && body.namespaces.some((n) => n.namespace_id === saved)) select.value = saved;
      $("signin-panel").hidden = true;
      $("app").hidden = false;
      $("ns-box").hidden = $("signout").hidden = false;
      await chooseNamespace(select.value);
    } catch (err) {
      if (!(err instanceof ApiError && err.message === "signed out")) signOut(String(err.message || err));
    }
  }

  function signOut(message = "") {
    sessionStorage.removeItem(KEY);
    stopDetail();
    clearInterval(state.timer);
    $("app").hidden = true;
    $("ns-box").hidden = $("signout").hidden = true;
    $("signin-panel").hidden = false;
    $("signin-error").textContent = message;
  }

  async function chooseNamespace(ns) {
    state.ns = ns;
    sessionStorage.setItem(NS, ns);
    state.selected = null;
    $("detail").hidden = true;
    await loadPlugins();
    clearInterval(state.timer);
    state.timer = setInterval(() => loadPlugins().catch(() => {}), 5000);
  }

  // -- the plugin list -----------------------------------------------------------------------
  async function loadPlugins() {
    loadModels().catch(() => {});
    const body = await api(nsPath("/plugins"));
    state.plugins = body.plugins.sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
    const statuses = await Promise.all(state.plugins.map((p) => api(nsPath(`/plugins/${p.plugin_id}/status`)).catch(() => null)));
    state.plugins.forEach((p, i) => { if (statuses[i]) state.statuses[p.plugin_id] = statuses[i]; });
    renderPlugins();
  }

  function renderPlugins() {
    $("plugin-count").textContent = `(${state.plugins.length})`;
    $("plugins-empty").hidden = state.plugins.length > 0;
    const rows = state.plugins.map((p) => {
      const st = state.statuses[p.plugin_id] || {};
      const row = el("tr", { "data-plugin-id": p.plugin_id, class: p.plugin_id === state.selected ? "selected" : "" },
        el("td", {}, p.name), el("td", {}, p.version),
        el("td", {}, el("span", { class: `badge ${st.status || ""}` }, st.status || "?")),
        el("td", {}, st.deployed ? "serving" : "-"));
      row.addEventListener("click", () => select(p.plugin_id));
      return row;
    });
    $("plugins").querySelector("tbody").replaceChildren(...rows);
  }

  // -- the namespace's models (weights plugins load by id) ------------------------------------
  async function loadModels() {
    const ns = state.ns;
    const body = await api(nsPath("/models"));
    if (ns !== state.ns) return;
    const models = body.models.sort((a, b) => a.model_id.localeCompare(b.model_id));
    $("model-count").textContent = `(${models.length})`;
    $("models-empty").hidden = models.length > 0;
    $("models").querySelector("tbody").replaceChildren(...models.map((m) =>
      el("tr", { "data-model-id": m.model_id, class: "static" },
        el("td", {}, m.model_id), el("td", {}, m.model_format), el("td", {}, m.task_type || "-"),
        el("td", {}, m.deployed ? "yes" : "no"))));
  }

  // -- one plugin ----------------------------------------------------------------------------
  function stopDetail() {
    if (state.watch) state.watch.abort();
    state.watch = null;
    clearInterval(state.detailTimer);
  }

  async function select(pluginId) {
    stopDetail();
    state.selected = pluginId;
    renderPlugins();
    const plugin = state.plugins.find((p) => p.plugin_id === pluginId);
    $("detail").hidden = false;
    $("d-title").textContent = `${plugin.name} ${plugin.version}`;
    $("d-description").textContent = plugin.description || "";
    $("d-action").textContent = "";
    renderStatus(state.statuses[pluginId] || { status: "?" });
    renderRollbackChoices(plugin);
    watchStatus(pluginId);
    refreshDetail();
    state.detailTimer = setInterval(refreshDetail, 3000);
  }

  function renderStatus(st) {
    state.statuses[st.plugin_id || state.selected] = st;
    const badge = $("d-status");
    badge.textContent = st.status;
    badge.className = `badge ${st.status}`;
    const bar = $("d-progress");
    bar.style.width = `${PROGRESS[st.status] || 0}%`;
    bar.style.background = st.status === "failed" ? "var(--bad)" : "";
    const eta = st.estimated_completion_seconds && !FINAL.has(st.status) ? ` (about ${st.estimated_completion_seconds} s left)` : "";
    $("d-message").textContent = (st.message || "") + eta;
    $("d-error").textContent = st.status === "failed" ? st.error || "" : "";
    $("d-route").textContent = st.route_prefix || "-";
    renderPlugins();
  }

  async function watchStatus(pluginId) {
    if (state.watch) state.watch.abort();
    const controller = new AbortController();
    state.watch = controller;
    try {
      const resp = await fetch(nsPath(`/plugins/${pluginId}/status?watch=true`), {
        headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) }, signal: controller.signal });
      if (!resp.ok || !resp.body) return;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const chunk = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data && state.selected === pluginId) renderStatus(JSON.parse(data));
        }
      }
    } catch (err) {
      if (err.name !== "AbortError") $("d-action").textContent = `status watch stopped: ${err.message}`;
    }
    if (state.watch === controller) { state.watch = null; refreshDetail(); }
  }

  async function refreshDetail() {
    const pluginId = state.selected;
    if (!pluginId) return;
    const [figures, history, logs] = await Promise.all([
      api(nsPath(`/plugins/${pluginId}/metrics`)).catch(() => null),
      api(nsPath(`/plugins/${pluginId}/deployments?limit=10`)).catch(() => null),
      api(nsPath(`/plugins/${pluginId}/logs?limit=100`)).catch(() => null),
    ]);
    if (state.selected !== pluginId) return;
    if (figures) renderFigures(figures);
    if (history) renderHistory(history);
    if (logs) renderLogs(logs);
  }

  function renderFigures(f) {
    const r = f.replicas;
    $("d-replicas").textContent = r ? `${r.ready}/${r.desired} ready, ${r.restarts} restarts` : "-";
    $("d-requests").textContent = `${f.totals.requests} total, ${f.totals.in_flight} in flight`;
    $("d-errors").textContent = String(f.totals.errors);
    const last = f.series[f.series.length - 1];
    $("d-latency").textContent = last ? `${fmt(last.p50_ms, " ms")} / ${fmt(last.p99_ms, " ms")}` : "-";
    drawChart(f.series);
  }

  function drawChart(series) {
    const svg = $("chart");
    const W = 300, H = 120;
    const line = (values, color) => {
      const max = Math.max(1e-9, ...values);
      const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * W},${H - 4 - (v / max) * (H - 12)}`);
      const node = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      node.setAttribute("points", pts.join(" "));
      node.setAttribute("fill", "none");
      node.setAttribute("stroke", color);
      node.setAttribute("stroke-width", "2");
      node.setAttribute("vector-effect", "non-scaling-stroke");
      return node;
    };
    const css = getComputedStyle(document.documentElement);
    svg.replaceChildren();
    if (series.length < 2) return;
    svg.append(line(series.map((s) => s.requests_per_s), css.getPropertyValue("--accent")),
      line(series.map((s) => s.p99_ms || 0), css.getPropertyValue("--warn")),
      line(series.map((s) => s.errors_per_s), css.getPropertyValue("--bad")));
  }

  function renderHistory(h) {
    $("d-alias").textContent = h.alias ? `${h.alias.route} -> ${h.alias.version}` : "-";
    const items = [];
    h.deployments.forEach((d) => d.events.forEach((e) => items.push({
      at: e.time, text: `release ${d.release_id} (${d.version}): ${e.from || "new"} -> ${e.to}${e.message ? " - " + e.message : ""}` })));
    h.alias_moves.forEach((m) => items.push({
      at: m.time, text: `alias ${m.name}: ${m.from_version || "none"} -> ${m.to_version || "none"} (${m.reason})` }));
    items.sort((a, b) => (a.at < b.at ? 1 : -1));
    $("timeline").replaceChildren(...items.slice(0, 40).map((i) =>
      el("li", {}, el("span", { class: "t" }, time(i.at)), i.text.split("\n")[0])));
  }

  function renderLogs(body) {
    const pre = $("logs");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = body.lines.map((l) => `${time(l.time)} ${l.replica} ${l.stream}: ${l.line}`).join("\n")
      || "(no output yet)";
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function renderRollbackChoices(plugin) {
    const versions = state.plugins.filter((p) => p.name === plugin.name && (state.statuses[p.plugin_id] || {}).deployed);
    const choice = $("rollback-version"), previous = choice.value;
    choice.replaceChildren(...versions.map((p) => el("option", { value: p.version }, p.version)));
    if (versions.some((p) => p.version === previous)) choice.value = previous;
    $("btn-rollback").disabled = versions.length === 0;
  }

  // -- actions -------------------------------------------------------------------------------
  async function act(label, work) {
    $("d-action").textContent = `${label}...`;
    try {
      const message = await work();
      $("d-action").textContent = message;
    } catch (err) {
      $("d-action").textContent = `${label} failed: ${err.message}`;
    }
  }

  function bind() {
    $("signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("key").value.trim()); });
    $("signout").addEventListener("click", () => signOut(""));
    $("ns").addEventListener("change", (e) => chooseNamespace(e.target.value));
    $("btn-deploy").addEventListener("click", () => act("deploy", async () => {
      const id = state.selected;
      const body = await api(nsPath(`/plugins/${id}/deploy`), { method: "POST" });
      renderStatus({ ...(state.statuses[id] || {}), plugin_id: id, status: body.status, message: body.message });
      watchStatus(id);
      return body.message;
    }));
    $("btn-undeploy").addEventListener("click", () => act("undeploy", async () => {
      const id = state.selected;
      const body = await api(nsPath(`/plugins/${id}/undeploy`), { method: "POST" });
      await loadPlugins();
      renderStatus(state.statuses[id]);
      return body.message;
    }));
    $("btn-rollback").addEventListener("click", () => act("rollback", async () => {
      const plugin = state.plugins.find((p) => p.plugin_id === state.selected);
      const version = $("rollback-version").value;
      const body = await api(nsPath(`/plugins/by-name/${encodeURIComponent(plugin.name)}/rollback`), {
        method: "POST", body: JSON.stringify({ version }) });
      refreshDetail();
      return body.message;
    }));
    setInterval(() => {
      const plugin = state.plugins.find((p) => p.plugin_id === state.selected);
      if (plugin) renderRollbackChoices(plugin);
    }, 5000);
  }

  bind();
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved);
})();
