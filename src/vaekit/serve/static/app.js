// vaekit explorer: plain JavaScript, no build step, no network traffic but this server's /api.
"use strict";

(() => {
  const RANGE = 3; // sliders and the pad span [-3, 3]: nearly all of a standard normal prior
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const $ = (id) => document.getElementById(id);
  // A server bound off loopback wants the token from the URL it printed (?token=...) on every
  // API request; on loopback there is none.
  const TOKEN = new URLSearchParams(window.location.search).get("token") || "";

  const state = {
    info: null, z: [], y: null,
    inflight: false, pending: false, waiters: [], // decode: at most one request in flight
    native: document.createElement("canvas"), // the decoded image at its own size
    scatter: null, walk: null,
  };
  const errors = [];

  function report(message) {
    $("status").textContent = message || "";
  }

  async function api(path, body) {
    const headers = TOKEN ? {"Authorization": `Bearer ${TOKEN}`} : {};
    const init = body === undefined ? {headers} : {
      method: "POST", headers: {...headers, "Content-Type": "application/json"},
      body: JSON.stringify(body),
    };
    const response = await fetch(path, init);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = `${path}: ${data.detail || response.statusText}`;
      errors.push(message);
      throw new Error(message);
    }
    return data;
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("could not read an image from the server"));
      img.src = url;
    });
  }

  // --- the decoded view -------------------------------------------------------------------------

  async function show(result) {
    const view = $("view");
    const ctx = view.getContext("2d");
    const native = state.native;
    if (result.image) {
      const img = await loadImage(result.image);
      native.width = img.width;
      native.height = img.height;
      native.getContext("2d").drawImage(img, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.clearRect(0, 0, view.width, view.height);
      ctx.drawImage(img, 0, 0, view.width, view.height);
    } else if (result.values) { // not images: one bar per feature
      const v = result.values;
      native.width = v.length;
      native.height = 1;
      const lo = Math.min(...v, 0), hi = Math.max(...v, 0), span = hi - lo || 1;
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, view.width, view.height);
      ctx.fillStyle = "#1f77b4";
      const w = view.width / v.length, base = view.height * (hi / span);
      v.forEach((x, i) => {
        const h = (x / span) * view.height;
        ctx.fillRect(i * w, base - Math.max(h, 0), Math.max(w - 1, 1), Math.abs(h));
      });
      state.values = v;
    }
    if (result.ms !== undefined) $("ms").textContent = `(${result.ms.toFixed(1)} ms on the server)`;
  }

  function decodeBody() {
    const body = {z: state.z};
    if (state.info.conditional) body.y = state.y;
    return body;
  }

  // Latest wins: while a request is out, remember that another is wanted and send it after.
  async function requestDecode() {
    if (!state.info || !state.info.has_decoder) return;
    if (state.inflight) { state.pending = true; return; }
    state.inflight = true;
    try {
      do {
        state.pending = false;
        try {
          await show(await api("/api/decode", decodeBody()));
          report("");
        } catch (e) { report(e.message); }
      } while (state.pending);
    } finally {
      state.inflight = false;
      state.waiters.splice(0).forEach((resolve) => resolve());
    }
  }

  function settled() { // resolves once the view shows the decode of the current z
    if (!state.inflight && !state.pending) return Promise.resolve();
    return new Promise((resolve) => state.waiters.push(resolve));
  }

  function pixels() {
    const c = state.native;
    if (!c.width) return state.values ? Array.from(state.values) : [];
    return Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data);
  }

  // --- sliders and pad --------------------------------------------------------------------------

  function buildSliders() {
    const box = $("sliders");
    box.textContent = "";
    state.z.forEach((_, i) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      const out = document.createElement("output");
      Object.assign(input, {type: "range", min: -RANGE, max: RANGE, step: 0.01, value: 0});
      input.dataset.dim = i;
      out.textContent = "0.00";
      input.setAttribute("aria-label", `z${i + 1}`);
      input.addEventListener("input", () => {
        state.z[i] = Number(input.value);
        out.textContent = state.z[i].toFixed(2);
        drawPad();
        requestDecode();
      });
      label.append(`z${i + 1}`, input, out);
      box.append(label);
    });
    for (const [id, dim] of [["dimx", 0], ["dimy", Math.min(1, state.z.length - 1)]]) {
      const select = $(id);
      select.textContent = "";
      state.z.forEach((_, i) => select.add(new Option(`z${i + 1}`, i)));
      select.value = dim;
      select.addEventListener("change", drawPad);
    }
  }

  function syncSliders() {
    document.querySelectorAll("#sliders input").forEach((input) => {
      const i = Number(input.dataset.dim);
      input.value = state.z[i];
      input.nextElementSibling.textContent = state.z[i].toFixed(2);
    });
  }

  function setZ(z) {
    state.z = z.map(Number);
    syncSliders();
    drawPad();
    requestDecode();
  }

  function drawPad() {
    const pad = $("pad"), ctx = pad.getContext("2d");
    const W = pad.width, H = pad.height;
    ctx.clearRect(0, 0, W, H);
    ctx.strokeStyle = "#ccc";
    for (let v = -RANGE; v <= RANGE; v += 1) {
      const px = ((v + RANGE) / (2 * RANGE)) * W, py = ((RANGE - v) / (2 * RANGE)) * H;
      ctx.beginPath(); ctx.moveTo(px, 0); ctx.lineTo(px, H); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(0, py); ctx.lineTo(W, py); ctx.stroke();
    }
    const dx = Number($("dimx").value), dy = Number($("dimy").value);
    const x = ((state.z[dx] + RANGE) / (2 * RANGE)) * W;
    const y = ((RANGE - state.z[dy]) / (2 * RANGE)) * H;
    ctx.fillStyle = "#e65100";
    ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.fill();
  }

  function padEvents() {
    const pad = $("pad");
    const move = (event) => {
      const r = pad.getBoundingClientRect();
      const fx = Math.min(Math.max((event.clientX - r.left) / r.width, 0), 1);
      const fy = Math.min(Math.max((event.clientY - r.top) / r.height, 0), 1);
      state.z[Number($("dimx").value)] = Number((fx * 2 * RANGE - RANGE).toFixed(2));
      state.z[Number($("dimy").value)] = Number((RANGE - fy * 2 * RANGE).toFixed(2));
      syncSliders();
      drawPad();
      requestDecode();
    };
    pad.addEventListener("pointerdown", (e) => { pad.setPointerCapture(e.pointerId); move(e); });
    pad.addEventListener("pointermove", (e) => { if (e.buttons) move(e); });
  }

  // --- class / cluster selector, sample ---------------------------------------------------------

  function buildSelector() {
    const info = state.info;
    if (!info.selector) return;
    $("label-box").hidden = false;
    $("label-name").textContent = info.selector;
    const select = $("label");
    if (info.selector === "cluster") select.add(new Option("any (p(z))", ""));
    for (let k = 0; k < info.num_classes; k++) {
      const name = info.class_names ? info.class_names[k] : String(k);
      select.add(new Option(name, k));
    }
    select.value = info.selector === "class" ? "0" : "";
    state.y = info.selector === "class" ? 0 : null;
    select.addEventListener("change", () => {
      state.y = select.value === "" ? null : Number(select.value);
      requestDecode();
      loadManifold();
    });
  }

  async function sample() {
    const body = {n: 1};
    if (state.y !== null) body.y = state.y;
    try { setZ((await api("/api/sample", body)).z[0]); } catch (e) { report(e.message); }
  }

  // --- scatter ----------------------------------------------------------------------------------

  async function loadScatter() {
    if (!state.info.n_data) {
      $("scatter-axes").textContent = state.info.data_error || "(no data)";
      return;
    }
    try { state.scatter = await api("/api/scatter"); } catch (e) { report(e.message); return; }
    const s = state.scatter, canvas = $("scatter");
    $("scatter-axes").textContent = `${s.axes[0]} vs ${s.axes[1]}`;
    const xs = s.points.map((p) => p[0]), ys = s.points.map((p) => p[1]);
    const pad = 10;
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    s.toPx = ([x, y]) => [
      pad + ((x - x0) / (x1 - x0 || 1)) * (canvas.width - 2 * pad),
      canvas.height - pad - ((y - y0) / (y1 - y0 || 1)) * (canvas.height - 2 * pad),
    ];
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    s.points.forEach((p, i) => {
      const [px, py] = s.toPx(p);
      ctx.fillStyle = s.labels ? PALETTE[s.labels[i] % PALETTE.length] : "#1f77b4";
      ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
    });
    canvas.addEventListener("click", (event) => {
      const r = canvas.getBoundingClientRect();
      const cx = ((event.clientX - r.left) / r.width) * canvas.width;
      const cy = ((event.clientY - r.top) / r.height) * canvas.height;
      let best = -1, bestD = 100; // within 10 px
      s.points.forEach((p, i) => {
        const [px, py] = s.toPx(p), d = (px - cx) ** 2 + (py - cy) ** 2;
        if (d < bestD) { best = i; bestD = d; }
      });
      if (best >= 0) pick(best);
    });
  }

  async function pick(index) {
    try {
      const r = await api("/api/encode", {index});
      if (typeof r.input === "string") $("picked-input").src = r.input;
      if (typeof r.reconstruction === "string") $("picked-recon").src = r.reconstruction;
      $("picked-label").textContent = `#${index}` + (r.y === null ? "" : ` (class ${r.y})`);
      if (state.info.conditional && r.y !== null) { state.y = r.y; $("label").value = r.y; }
      setZ(r.mean);
    } catch (e) { report(e.message); }
  }

  // --- manifold ---------------------------------------------------------------------------------

  async function loadManifold() {
    if (!state.info.manifold) return;
    $("manifold-panel").hidden = false;
    const y = state.info.conditional ? `&y=${state.y}` : "";
    try {
      const m = await api(`/api/manifold?n=15${y}`);
      state.manifold = m;
      $("manifold").src = m.image;
    } catch (e) { report(e.message); }
  }

  function manifoldEvents() {
    $("manifold").addEventListener("click", (event) => {
      const m = state.manifold;
      if (!m) return;
      const r = event.target.getBoundingClientRect();
      const col = Math.min(m.n - 1, Math.floor(((event.clientX - r.left) / r.width) * m.n));
      const row = Math.min(m.n - 1, Math.floor(((event.clientY - r.top) / r.height) * m.n));
      setZ([m.quantiles[col], m.quantiles[m.n - 1 - row]]); // rows run from the largest z2
    });
  }

  // --- interpolate ------------------------------------------------------------------------------

  function readFile(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new Error(`could not read ${file.name}`));
      reader.readAsDataURL(file);
    });
  }

  async function endpoint(which) {
    const file = $(`${which}-file`).files[0];
    if (file) {
      if (file.size > state.info.max_upload_bytes) {
        throw new Error(`${file.name} is over ${state.info.max_upload_bytes} bytes`);
      }
      return {image: await readFile(file)};
    }
    return {index: Number($(`${which}-index`).value)};
  }

  async function interpolate() {
    try {
      const body = {a: await endpoint("a"), b: await endpoint("b"), steps: Number($("steps").value)};
      if (state.info.conditional) body.y = state.y;
      const r = await api("/api/interpolate", body);
      state.walk = r;
      const strip = $("walk");
      strip.textContent = "";
      (r.images || []).forEach((src, k) => {
        const img = new Image();
        img.src = src;
        img.title = `step ${k}`;
        img.addEventListener("click", () => walkTo(k));
        strip.append(img);
      });
      const pos = $("walk-pos");
      Object.assign(pos, {max: r.z.length - 1, value: 0, disabled: false});
      walkTo(0);
      report("");
    } catch (e) { report(e.message); }
  }

  function walkTo(k) {
    $("walk-pos").value = k;
    document.querySelectorAll("#walk img").forEach((img, i) => {
      img.classList.toggle("current", i === k);
    });
    setZ(state.walk.z[k]);
  }

  // --- start ------------------------------------------------------------------------------------

  async function start() {
    if (TOKEN) $("api-link").href = `/docs?token=${encodeURIComponent(TOKEN)}`;
    try { state.info = await api("/api/info"); } catch (e) { report(e.message); return; }
    const info = state.info;
    const shape = info.image_shape ? info.image_shape.join("x") : info.event_shape.join("x");
    $("run-info").textContent = `run ${info.run}: ${info.latent_dim}-D latent, ` +
      `data ${shape}, prior ${info.prior}` + (info.conditional ? ", conditional" : "");
    state.z = new Array(info.latent_dim).fill(0);
    buildSliders();
    buildSelector();
    padEvents();
    manifoldEvents();
    drawPad();
    $("sample").addEventListener("click", sample);
    $("zero").addEventListener("click", () => setZ(state.z.map(() => 0)));
    $("interpolate").addEventListener("click", interpolate);
    $("walk-pos").addEventListener("input", (e) => walkTo(Number(e.target.value)));
    if (!info.has_decoder) {
      for (const id of ["decoder-panel", "interpolate-panel"]) $(id).hidden = true;
      report("this model has no decoder (encoder-only): only the scatter is shown");
    } else {
      requestDecode();
    }
    loadManifold();
    loadScatter();
  }

  // For tests and the console: wait for the view, read its pixels, see API errors.
  window.vaekitExplorer = {settled, pixels, errors, state};
  const ready = start();
  window.vaekitExplorer.ready = ready;
  const originalSettled = settled;
  window.vaekitExplorer.settled = () => ready.then(originalSettled);
})();
