"use strict";
// The explorer page: reads the JSON written by keras_attn.inspect.explore and
// draws it. Weights are stored per row as 8-bit fractions of the row's maximum
// (levels * scale / LEVELS), optionally for the TOP_K strongest keys only.
(function () {
  const data = JSON.parse(document.getElementById("explorer-data").textContent);
  const LEVELS = data.limits.levels;
  const SVG = "http://www.w3.org/2000/svg";
  const HEAD_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"];
  const MAX_LINES = 20000; // beyond this, only lines of weight >= LINE_FLOOR
  const LINE_FLOOR = 0.02;
  const MAX_THUMBNAILS = 64;
  const state = {
    view: "tokens",
    example: 0,
    layer: data.initial.layer,
    head: data.initial.head, // null: the mean of the heads
    query: 0,
    rollout: false,
  };

  // === Decoding ===
  function bytes(text) {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  const decoded = new Map();
  function stored(weights) {
    if (!decoded.has(weights)) {
      decoded.set(weights, {
        levels: bytes(weights.levels),
        scale: new Float32Array(bytes(weights.scale).buffer),
        keys: weights.keys ? new Uint32Array(bytes(weights.keys).buffer) : null,
      });
    }
    return decoded.get(weights);
  }

  // Row `row` (an index into the flattened leading axes) as S dense weights.
  function denseRow(weights, row, keyCount) {
    const { levels, scale, keys } = stored(weights);
    const width = keys ? data.limits.topK : keyCount;
    const out = new Float32Array(keyCount);
    for (let t = 0; t < width; t++) {
      const key = keys ? keys[row * width + t] : t;
      out[key] = (levels[row * width + t] * scale[row]) / LEVELS;
    }
    return out;
  }

  // (T, S) weights of the current example for one head, or the heads' mean.
  function layerMatrix(layer, example, head) {
    const [, heads, queries, keys] = layer.shape;
    const chosen = head === null ? [...Array(heads).keys()] : [head];
    const rows = [];
    for (let i = 0; i < queries; i++) {
      const sum = new Float32Array(keys);
      for (const h of chosen) {
        const row = denseRow(layer.weights, (example * heads + h) * queries + i, keys);
        for (let j = 0; j < keys; j++) sum[j] += row[j] / chosen.length;
      }
      rows.push(sum);
    }
    return rows;
  }

  function rolloutRow(example, query) {
    const tokens = data.sequences.encoder.labels[0].length;
    return denseRow(data.image.rollout, example * tokens + query, tokens);
  }

  // === Helpers ===
  function element(tag, attributes, parent, namespace) {
    const node = namespace
      ? document.createElementNS(namespace, tag)
      : document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function option(select, value, text) {
    element("option", { value: String(value), text: text }, select);
  }

  function currentLayer() {
    return data.layers[state.layer];
  }

  function labels(sequence) {
    return data.sequences[sequence].labels[state.example];
  }

  function viridis(t) {
    // A few stops of matplotlib's viridis, linearly interpolated.
    const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2);
    const f = x - i;
    const c = stops[i].map((v, k) => Math.round(v + f * (stops[i + 1][k] - v)));
    return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  }

  // === Controls ===
  function buildControls() {
    const nav = document.getElementById("views");
    const views = [["tokens", "Tokens"]];
    if (data.image) views.push(["image", "Image"]);
    if (data.diagnostics && Object.keys(data.diagnostics).length) {
      views.push(["diagnostics", "Diagnostics"]);
    }
    for (const [name, text] of views) {
      const button = element("button", { id: `view-${name}`, "data-view": name, text: text }, nav);
      button.addEventListener("click", () => { state.view = name; draw(); });
    }
    const example = document.getElementById("example");
    for (let b = 0; b < data.examples; b++) option(example, b, String(b));
    example.addEventListener("change", () => { state.example = Number(example.value); draw(); });
    const layer = document.getElementById("layer");
    data.layers.forEach((entry, i) => option(layer, i, entry.name));
    layer.value = String(state.layer);
    layer.addEventListener("change", () => {
      state.layer = Number(layer.value);
      state.query = 0;
      buildHeads();
      draw();
    });
    document.getElementById("head").addEventListener("change", (event) => {
      state.head = event.target.value === "mean" ? null : Number(event.target.value);
      draw();
    });
    buildHeads();
  }

  function buildHeads() {
    const select = document.getElementById("head");
    const heads = currentLayer().shape[1];
    if (state.head !== null && state.head >= heads) state.head = null;
    select.textContent = "";
    option(select, "mean", "all (mean)");
    for (let h = 0; h < heads; h++) option(select, h, String(h));
    select.value = state.head === null ? "mean" : String(state.head);
  }

  // === Tokens: lines from each query to the keys it attends ===
  function drawTokens(section) {
    const layer = currentLayer();
    const matrix = layerMatrix(layer, state.example, state.head);
    const queries = labels(layer.queries);
    const keys = labels(layer.keys);
    const rowHeight = 18;
    const labelWidth = 110;
    const gap = 260;
    const height = rowHeight * Math.max(queries.length, keys.length) + 30;
    element("p", { class: "legend", text: `${layer.name}: queries (${layer.queries}) on the left, keys (${layer.keys}) on the right; hover a token to isolate its lines.` }, section);
    const svg = element("svg", { id: "token-lines", width: 2 * labelWidth + gap, height: height }, section, SVG);
    const colour = state.head === null ? "#2d6cdf" : HEAD_COLOURS[state.head % HEAD_COLOURS.length];
    const all = queries.length * keys.length <= MAX_LINES;
    const floor = all ? 0 : LINE_FLOOR;
    svg.setAttribute("data-line-floor", String(floor));
    const y = (i) => 20 + i * rowHeight;
    const lines = element("g", {}, svg, SVG);
    matrix.forEach((row, i) => row.forEach((w, j) => {
      // An unlabelled query is padding: it attends, but nothing reads it.
      if (w <= floor || queries[i] === "") return;
      element("line", {
        x1: labelWidth + 4, y1: y(i) - 4, x2: labelWidth + gap - 4, y2: y(j) - 4,
        stroke: colour, "stroke-width": 2, "stroke-opacity": Math.min(1, w).toFixed(4),
        "data-query": i, "data-key": j, "data-weight": w.toPrecision(6),
      }, lines, SVG);
    }));
    const texts = [];
    queries.forEach((label, i) => texts.push(element("text", { class: "query", x: labelWidth, y: y(i), "data-side": "query", "data-index": i, text: label }, svg, SVG)));
    keys.forEach((label, j) => texts.push(element("text", { x: labelWidth + gap, y: y(j), "data-side": "key", "data-index": j, text: label }, svg, SVG)));
    for (const text of texts) {
      text.addEventListener("mouseenter", () => isolate(svg, text.dataset.side, text.dataset.index));
      text.addEventListener("mouseleave", () => isolate(svg, null, null));
    }
    if (!all) element("p", { class: "legend", text: `${queries.length} × ${keys.length} pairs: lines of weight below ${LINE_FLOOR} are not drawn.` }, section);
  }

  function isolate(svg, side, index) {
    for (const line of svg.querySelectorAll("line")) {
      const own = side === null || line.dataset[side] === index;
      line.classList.toggle("dim", !own);
    }
    for (const text of svg.querySelectorAll("text")) {
      text.classList.toggle("dim", side !== null && text.dataset.side === side && text.dataset.index !== index);
    }
  }

  // === Image: a query's attention over the patches ===
  function patchWeights(row) {
    const [rows, columns] = data.image.grid;
    return Array.from(row.slice(data.image.prefix, data.image.prefix + rows * columns));
  }

  function drawHeat(canvas, picture, weights, size) {
    const [rows, columns] = data.image.grid;
    const scale = size / Math.max(picture.naturalWidth, picture.naturalHeight);
    canvas.width = Math.round(picture.naturalWidth * scale);
    canvas.height = Math.round(picture.naturalHeight * scale);
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.drawImage(picture, 0, 0, canvas.width, canvas.height);
    const top = Math.max(...weights) || 1;
    const cellW = canvas.width / columns;
    const cellH = canvas.height / rows;
    weights.forEach((w, p) => {
      // Dim each patch by how little it is attended: the strongest stays bright.
      context.fillStyle = `rgba(0, 0, 0, ${(0.8 * (1 - w / top)).toFixed(4)})`;
      context.fillRect((p % columns) * cellW, Math.floor(p / columns) * cellH, cellW, cellH);
    });
    canvas.setAttribute("data-weights", JSON.stringify(weights.map((w) => Number(w.toPrecision(6)))));
  }

  function drawImage(section) {
    const layer = currentLayer();
    if (!data.sequences[layer.keys].image) {
      element("p", { class: "legend", text: `The keys of ${layer.name} are not image patches: choose an encoder or cross-attention layer.` }, section);
      return;
    }
    const queries = labels(layer.queries);
    state.query = Math.min(state.query, queries.length - 1);
    const controls = element("p", {}, section);
    const label = element("label", { text: "Query " }, controls);
    const query = element("select", { id: "query" }, label);
    queries.forEach((text, i) => option(query, i, `${i}: ${text}`));
    query.value = String(state.query);
    query.addEventListener("change", () => { state.query = Number(query.value); draw(); });
    const rolloutAvailable = data.image.rollout && layer.queries === "encoder";
    if (rolloutAvailable) {
      const box = element("label", { text: " rollout (all encoder layers, heads averaged) " }, controls);
      const check = element("input", { id: "rollout", type: "checkbox" }, box);
      check.checked = state.rollout;
      check.addEventListener("change", () => { state.rollout = check.checked; draw(); });
    }
    const useRollout = rolloutAvailable && state.rollout;
    const matrix = useRollout ? null : layerMatrix(layer, state.example, state.head);
    const rowOf = (i) => (useRollout ? rolloutRow(state.example, i) : matrix[i]);
    const picture = new Image();
    picture.onload = () => {
      const big = element("canvas", { id: "heat-map", "data-query": state.query }, element("div", { class: "map selected" }, section));
      drawHeat(big, picture, patchWeights(rowOf(state.query)), 320);
      element("h2", { text: useRollout ? "Rollout of every query" : "Every query of this layer" }, section);
      const strip = element("div", { class: "maps" }, section);
      queries.slice(0, MAX_THUMBNAILS).forEach((text, i) => {
        if (text === "") return; // padding
        const cell = element("div", { class: i === state.query ? "map selected" : "map" }, strip);
        const canvas = element("canvas", { class: "thumbnail", "data-query": i }, cell);
        drawHeat(canvas, picture, patchWeights(rowOf(i)), 96);
        element("div", { text: text }, cell);
        cell.addEventListener("click", () => { state.query = i; draw(); });
      });
      if (queries.length > MAX_THUMBNAILS) element("p", { class: "legend", text: `The first ${MAX_THUMBNAILS} of ${queries.length} queries are shown.` }, section);
      drawn();
    };
    picture.src = data.image.pictures[state.example];
    return false; // drawn when the picture has loaded
  }

  // === Diagnostics: the ViT paper's Fig. 7 ===
  function drawDiagnostics(section) {
    const diagnostics = data.diagnostics;
    if (diagnostics.distance) drawDistance(section, diagnostics.distance);
    if (diagnostics.positionSimilarity) drawSimilarity(section, diagnostics.positionSimilarity);
    if (diagnostics.patchComponents) {
      element("h2", { text: "Patch-embedding filters: principal components" }, section);
      const row = element("div", { class: "maps pictures", id: "patch-components" }, section);
      diagnostics.patchComponents.pictures.forEach((uri, i) => {
        const cell = element("div", { class: "map" }, row);
        element("img", { src: uri, width: 48, height: 48, alt: `component ${i}` }, cell);
        element("div", { text: `${(100 * diagnostics.patchComponents.ratios[i]).toFixed(1)}%` }, cell);
      });
    }
  }

  function drawDistance(section, distance) {
    element("h2", { text: "Mean attention distance (pixels) per head against depth" }, section);
    const width = 420, height = 250, left = 50, bottom = 40;
    const svg = element("svg", { id: "attention-distance", width: width, height: height }, section, SVG);
    const top = Math.max(1e-6, ...distance.values.flat());
    const layers = distance.values.length;
    const x = (l) => left + ((l + 0.5) / layers) * (width - left - 10);
    const y = (d) => height - bottom - (d / top) * (height - bottom - 10);
    element("line", { x1: left, y1: height - bottom, x2: width - 10, y2: height - bottom, stroke: "#444" }, svg, SVG);
    element("line", { x1: left, y1: 10, x2: left, y2: height - bottom, stroke: "#444" }, svg, SVG);
    element("text", { x: left - 6, y: 14, "text-anchor": "end", text: top.toFixed(1) }, svg, SVG);
    element("text", { x: left - 6, y: height - bottom, "text-anchor": "end", text: "0" }, svg, SVG);
    element("text", { x: width / 2, y: height - 6, "text-anchor": "middle", text: "network depth (layer)" }, svg, SVG);
    distance.values.forEach((heads, l) => {
      element("text", { x: x(l), y: height - bottom + 14, "text-anchor": "middle", text: String(l) }, svg, SVG);
      heads.forEach((d, h) => element("circle", {
        cx: x(l), cy: y(d), r: 4, fill: HEAD_COLOURS[h % HEAD_COLOURS.length],
        "data-layer": distance.layers[l], "data-head": h, "data-distance": d,
      }, svg, SVG));
    });
  }

  function drawSimilarity(section, similarity) {
    element("h2", { text: "Position-embedding similarity (cosine): tile (r, c) compares patch (r, c) with every patch" }, section);
    const [rows, columns] = similarity.grid;
    const cell = Math.max(2, Math.floor(18 / Math.max(rows, columns)) * 2);
    const tile = cell * columns + 4;
    const canvas = element("canvas", { id: "position-similarity", width: tile * columns, height: (cell * rows + 4) * rows }, section);
    const context = canvas.getContext("2d");
    similarity.values.forEach((value, index) => {
      const c2 = index % columns, r2 = Math.floor(index / columns) % rows;
      const c1 = Math.floor(index / (rows * columns)) % columns;
      const r1 = Math.floor(index / (rows * columns * columns));
      context.fillStyle = viridis((value + 1) / 2);
      context.fillRect(c1 * tile + c2 * cell, r1 * (cell * rows + 4) + r2 * cell, cell, cell);
    });
    element("p", { class: "legend", text: "colour: −1 (dark purple) to +1 (yellow)" }, section);
  }

  // === Page ===
  function draw() {
    for (const section of document.querySelectorAll(".view")) {
      section.classList.toggle("active", section.id === `${state.view}-view`);
      section.textContent = "";
    }
    for (const button of document.querySelectorAll("nav button")) {
      button.classList.toggle("active", button.dataset.view === state.view);
    }
    const layer = currentLayer();
    const [, , , keyCount] = layer.shape;
    document.getElementById("note").textContent = layer.weights.keys
      ? `Each row keeps its ${data.limits.topK} strongest of ${keyCount} keys.`
      : "";
    const section = document.getElementById(`${state.view}-view`);
    document.body.removeAttribute("data-drawn");
    if (state.view === "tokens") drawTokens(section);
    else if (state.view === "image") { if (drawImage(section) === false) return; }
    else drawDiagnostics(section);
    drawn();
  }

  // Marks the page as finished drawing the current state (for scripts and tests).
  function drawn() {
    document.body.setAttribute("data-drawn", [state.view, state.layer, state.head, state.example, state.query, state.rollout].join(":"));
  }

  buildControls();
  draw();
})();
