// medsam-agent web page: plain JS, no build step, no network beyond this server.
// The token (when the server needs one) comes from the URL fragment: http://host:port/#token=...
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  const stage = $("stage"), strip = $("strip"), statusEl = $("status");
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) sessionStorage.setItem("msrt-token", hash.get("token"));
  const token = sessionStorage.getItem("msrt-token");

  let sid = null, info = null, image = null, mask = null, marks = [], drag = null;
  let streamAbort = null, busy = false, state = null;

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }
  async function api(method, path, body, raw) {
    const init = { method, headers: headers(raw ? {} : { "Content-Type": "application/json" }) };
    if (body !== undefined) init.body = raw ? body : JSON.stringify(body);
    const r = await fetch(path, init);
    if (!r.ok) {
      let detail = r.statusText;
      try { const j = await r.json(); detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) { /* not JSON */ }
      throw new Error(`${r.status}: ${detail}`);
    }
    return r.status === 204 ? null : (r.headers.get("content-type") || "").includes("json") ? r.json() : r.blob();
  }
  function say(text, error) { statusEl.textContent = text; statusEl.classList.toggle("error", !!error); }
  function fail(e) { say(String(e.message || e), true); }

  // ------------------------------------------------------------------ drawing
  async function loadBitmap(blob) { return createImageBitmap(blob); }
  async function refreshMask() {
    if (!sid) return;
    const blob = await api("GET", `/api/sessions/${sid}/current-mask.png`);
    const bmp = await loadBitmap(blob);
    const off = new OffscreenCanvas(bmp.width, bmp.height), octx = off.getContext("2d");
    octx.drawImage(bmp, 0, 0);
    const data = octx.getImageData(0, 0, bmp.width, bmp.height);
    const px = data.data;
    for (let i = 0; i < px.length; i += 4) {
      const on = px[i] > 127;
      px[i] = 46; px[i + 1] = 204; px[i + 2] = 64; px[i + 3] = on ? 110 : 0;
    }
    octx.putImageData(data, 0, 0);
    mask = off;
    draw();
  }
  function draw() {
    if (!image) return;
    ctx.drawImage(image, 0, 0);
    if (mask) ctx.drawImage(mask, 0, 0);
    const r = Math.max(4, Math.round(canvas.width / 100));
    ctx.lineWidth = Math.max(2, r / 2);
    for (const m of marks) {
      if (m.box) {
        ctx.strokeStyle = m.source === "human" ? "#f0b429" : "#58a6ff";
        ctx.strokeRect(m.box[0], m.box[1], m.box[2] - m.box[0], m.box[3] - m.box[1]);
      } else {
        ctx.fillStyle = m.positive ? "#2ecc40" : "#ff4136";
        ctx.strokeStyle = m.source === "human" ? "#f0b429" : "#ffffff";
        ctx.beginPath(); ctx.arc(m.x, m.y, r, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
      }
    }
    if (drag && drag.moved) {
      ctx.strokeStyle = "#f0b429"; ctx.setLineDash([6, 4]);
      ctx.strokeRect(drag.x0, drag.y0, drag.x1 - drag.x0, drag.y1 - drag.y0);
      ctx.setLineDash([]);
    }
  }
  function thumb() {
    const c = document.createElement("canvas");
    c.width = 144; c.height = 144;
    const t = c.getContext("2d"), s = Math.min(144 / canvas.width, 144 / canvas.height);
    t.drawImage(canvas, 0, 0, canvas.width * s, canvas.height * s);
    return c;
  }

  // ------------------------------------------------------------------ turns and events
  function describe(turn) {
    const a = turn.action || {};
    let what = turn.outcome;
    if (a.name === "add_bbox") what = "box";
    else if (a.name === "add_point") what = a.positive ? "+ point" : "− point";
    else if (a.name === "undo") what = "undo";
    else if (a.name === "accept") what = "accept";
    else if (turn.outcome === "stop") what = "stop";
    return what;
  }
  function addCard(turn) {
    const li = document.createElement("li");
    li.className = turn.source === "agent" ? "agent" : "human";
    li.dataset.index = turn.index;
    const text = document.createElement("div");
    const dice = turn.dice == null ? "" : ` · Dice ${turn.dice.toFixed(3)}`;
    const area = turn.mask_area == null ? "" : ` · ${turn.mask_area} px`;
    text.innerHTML = `<div class="who">${turn.index + 1}. ${turn.source}: ${describe(turn)}</div>` +
      `<div class="meta">${turn.outcome}${area}${dice}</div>`;
    li.append(thumb(), text);
    strip.append(li);
    li.scrollIntoView({ block: "nearest" });
  }
  function marksFrom(turn) {
    const a = turn.action || {};
    if (turn.outcome !== "executed") { if (a.name === "undo") marks.pop(); return; }
    if (a.name === "add_bbox") marks.push({ box: a.pixels, source: turn.source });
    else if (a.name === "add_point") marks.push({ x: a.pixels[0], y: a.pixels[1], positive: a.positive, source: turn.source });
  }
  async function onEvent(ev) {
    if (ev.kind === "turn") {
      marksFrom(ev.turn);
      await refreshMask();
      addCard(ev.turn);
      say(`turn ${ev.turn.index + 1}: ${ev.turn.source} ${describe(ev.turn)} (${ev.turn.outcome})`);
    } else if (ev.kind === "reset") {
      strip.replaceChildren(); marks = []; mask = null; draw();
      if (ev.reason === "image") await loadImage();
      say(`new episode (${ev.reason})`);
    } else if (ev.kind === "end") {
      state = ev.state;
      const f = state.final || {};
      say(`done: ${state.end_reason}; mask ${f.area ?? "?"} px` + (f.dice != null ? `, Dice ${f.dice.toFixed(3)}` : "") + " — download it");
    } else if (ev.kind === "stopped") {
      const why = ev.state.agent_done;
      say(why ? `the agent finished (${why}): correct with a click or box, or accept (A)` : "agent paused: click, step or run");
    }
    else if (ev.kind === "error") { say(ev.detail, true); }
    else if (ev.kind === "closed") { say(`session ${ev.reason}: open the image again`, true); sid = null; }
    if (ev.state) state = ev.state;
    buttons();
  }
  async function listen() {
    if (streamAbort) streamAbort.abort();
    const abort = new AbortController(); streamAbort = abort;
    const mine = sid;
    try {
      const r = await fetch(`/api/sessions/${mine}/events`, { headers: headers(), signal: abort.signal });
      const reader = r.body.getReader(), dec = new TextDecoder();
      let buf = "", queue = Promise.resolve();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) { const ev = JSON.parse(data); queue = queue.then(() => onEvent(ev)).catch(fail); }
        }
      }
    } catch (e) { if (e.name !== "AbortError") fail(e); }
  }

  // ------------------------------------------------------------------ actions
  async function loadImage() {
    const blob = await api("GET", `/api/sessions/${sid}/image.png`);
    image = await loadBitmap(blob);
    canvas.width = image.width; canvas.height = image.height;
    stage.classList.remove("empty");
    draw();
  }
  async function openFile(file) {
    try {
      say(`uploading ${file.name} …`);
      const q = new URLSearchParams({ filename: file.name, target: $("target").value.trim() });
      const st = await api("POST", `/api/sessions?${q}`, file, true);
      sid = st.id; state = st; marks = []; mask = null; strip.replaceChildren();
      await loadImage();
      listen();
      const m = st.mapping || {};
      if (m.center != null) { $("wc").value = m.center; $("ww").value = m.width; }
      $("slice").hidden = !st.slice_count;
      if (st.slice_count) { $("slice").max = st.slice_count; $("slice").value = st.slice_index + 1; }
      say(`${st.name}: ${st.width}×${st.height} ${st.format}${st.modality ? " " + st.modality : ""}` +
        (st.slice_count ? `, slice ${st.slice_index + 1}/${st.slice_count}` : "") + ". Type the target, then Run or click.");
    } catch (e) { fail(e); }
    buttons();
  }
  async function ensureTarget() {
    const t = $("target").value.trim();
    if (!t) throw new Error("type what to segment first");
    if (!state || state.target !== t) state = await api("PUT", `/api/sessions/${sid}/target`, { target: t });
  }
  async function guarded(fn) {
    if (!sid || busy) return;
    busy = true; buttons();
    try { await fn(); } catch (e) { fail(e); }
    busy = false; buttons();
  }
  const run = () => guarded(async () => { await ensureTarget(); say("agent running …"); state = await api("POST", `/api/sessions/${sid}/run`); });
  const step = () => guarded(async () => { await ensureTarget(); say("agent thinking …"); state = (await api("POST", `/api/sessions/${sid}/step`)).state; });
  const stop = () => guarded(async () => { state = await api("POST", `/api/sessions/${sid}/stop`); });
  const human = (action) => guarded(async () => { await ensureTarget(); state = (await api("POST", `/api/sessions/${sid}/actions`, action)).state; });
  const reset = () => guarded(async () => { state = await api("POST", `/api/sessions/${sid}/reset`); });
  const applyWindow = () => guarded(async () => {
    const preset = $("preset").value, c = $("wc").value, w = $("ww").value;
    const window = c !== "" && w !== "" ? `${c},${w}` : preset;
    const body = {};
    if (window) body.window = window;
    if (!$("slice").hidden && $("slice").value !== "") body.slice = Number($("slice").value) - 1;
    if (!Object.keys(body).length) throw new Error("pick a preset, type a centre and width, or a slice");
    state = await api("POST", `/api/sessions/${sid}/image`, body);
  });
  const download = () => guarded(async () => {
    const name = $("download-name").value;
    const blob = await api("GET", `/api/sessions/${sid}/files/${name}`);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${(state && state.name ? state.name.split(".")[0] : "mask")}-${name}`;
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    say(`downloaded ${a.download}`);
  });

  function buttons() {
    const open = !!sid, over = !!(state && state.done), running = !!(state && state.running);
    const spent = !!(state && state.agent_done === "budget");
    for (const id of ["run", "step"]) $(id).disabled = !open || busy || over || running || spent;
    $("stop").disabled = !open || !running;
    for (const id of ["undo", "accept"]) $(id).disabled = !open || busy || over || !(state && state.started);
    for (const id of ["reset", "download", "apply-window"]) $(id).disabled = !open || busy;
  }

  // ------------------------------------------------------------------ canvas input
  function toPixels(e) {
    const r = canvas.getBoundingClientRect();
    const x = Math.round((e.clientX - r.left) * (canvas.width / r.width));
    const y = Math.round((e.clientY - r.top) * (canvas.height / r.height));
    return [Math.min(Math.max(x, 0), canvas.width - 1), Math.min(Math.max(y, 0), canvas.height - 1)];
  }
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("mousedown", (e) => {
    if (!sid) return;
    const [x, y] = toPixels(e);
    drag = { x0: x, y0: y, x1: x, y1: y, moved: false, negative: e.button === 2 || e.shiftKey };
  });
  canvas.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const [x, y] = toPixels(e);
    drag.x1 = x; drag.y1 = y;
    drag.moved = drag.moved || Math.hypot(x - drag.x0, y - drag.y0) * (canvas.getBoundingClientRect().width / canvas.width) > 6;
    draw();
  });
  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    const d = drag; drag = null;
    if (d.moved && !d.negative) {
      const box = [Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.max(d.x0, d.x1), Math.max(d.y0, d.y1)];
      draw();
      if (box[2] > box[0] && box[3] > box[1]) human({ type: "box", box });
    } else if (e.target === canvas) {
      human({ type: "point", x: d.x0, y: d.y0, positive: !d.negative });
    } else draw();
  });

  // ------------------------------------------------------------------ wiring
  $("file").addEventListener("change", (e) => e.target.files[0] && openFile(e.target.files[0]));
  $("gt").addEventListener("change", (e) => {
    const f = e.target.files[0];
    if (f) guarded(async () => {
      state = await api("PUT", `/api/sessions/${sid}/gt?${new URLSearchParams({ filename: f.name })}`, f, true);
      say(`GT mask ${f.name} loaded: turns now show Dice`);
    });
  });
  stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("dragging"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("dragging"));
  stage.addEventListener("drop", (e) => {
    e.preventDefault(); stage.classList.remove("dragging");
    if (e.dataTransfer.files[0]) openFile(e.dataTransfer.files[0]);
  });
  $("run").onclick = run; $("step").onclick = step; $("stop").onclick = stop;
  $("undo").onclick = () => human({ type: "undo" });
  $("accept").onclick = () => human({ type: "accept" });
  $("reset").onclick = reset; $("download").onclick = download; $("apply-window").onclick = applyWindow;
  $("preset").onchange = () => { $("wc").value = ""; $("ww").value = ""; };
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") {
      if (e.key === "Enter" && e.target.id === "target") run();
      return;
    }
    const k = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && k === "z") { e.preventDefault(); human({ type: "undo" }); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const keys = { r: run, s: step, u: () => human({ type: "undo" }), a: () => human({ type: "accept" }),
      d: download, n: reset, w: applyWindow, escape: stop };
    if (keys[k]) { e.preventDefault(); keys[k](); }
  });
  stage.classList.add("empty");
  buttons();
  api("GET", "/api/info").then((i) => {
    info = i;
    for (const p of i.window_presets) { const o = document.createElement("option"); o.textContent = p; $("preset").append(o); }
    say(`Open an image to start. Policy: ${i.policy}${i.requires_gt ? " (GT-driven: load the GT mask too)" : ""}; tool: ${i.segmenter}.`);
  }).catch(fail);
})();
