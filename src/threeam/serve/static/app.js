// The threeam click-to-track page: plain ES module, no build step. Talks to the HTTP API in
// threeam/serve/app.py; one session per tab, kept alive by a WebSocket.
import { davisPalette, paintRle } from "./rle.js";

const $ = (sel) => document.querySelector(sel);
const PALETTE = davisPalette();
const MAX_ID = 254;

const S = {
  session: null,          // session info from the server
  frame: 0,
  objects: new Map(),     // id -> {prompts: Map(frame -> {points: [[x, y]], labels: [], box: [x0,y0,x1,y1] | null})}
  active: null,           // active object id
  masks: new Map(),       // frame -> {ids: Uint8Array(H*W), present: Map(id -> area)}
  images: new Map(),      // frame -> HTMLImageElement
  propagating: false,
  serverIds: new Set(),    // object ids the server's session knows
  ws: null,
  pingTimer: null,
  drag: null,
};

// ---------------------------------------------------------------- helpers
function status(text, kind = "") {
  const el = $("#status");
  el.textContent = text;
  el.className = kind;
}

async function api(path, { method = "GET", body, form } = {}) {
  const opts = { method, headers: {} };
  if (form) opts.body = form;
  else if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, opts);
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    try { const j = await res.json(); if (j.detail) detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) { /* not JSON */ }
    const err = new Error(detail);
    err.status = res.status;
    throw err;
  }
  return res;
}

const sessionPath = (rest = "") => `/api/sessions/${S.session.id}${rest}`;
const colour = (id) => PALETTE[id % 256];
const css = (id) => `rgb(${colour(id).join(",")})`;

function fail(e) {
  status(e.message || String(e), "error");
  if (e.status === 404 && S.session) { // the session expired or was closed
    setControls(false);
  }
}

// ---------------------------------------------------------------- masks
function storeFrame(payload) {
  const { width: w, height: h } = S.session;
  const ids = new Uint8Array(w * h);
  const present = new Map();
  for (const [key, rle] of Object.entries(payload.masks || {})) {
    const id = Number(key);
    const area = paintRle(ids, rle, id);
    if (area > 0) present.set(id, area);
  }
  S.masks.set(payload.frame, { ids, present });
  S.serverIds = new Set(payload.obj_ids || []);
  for (const id of S.serverIds) ensureObject(id);
}

function ensureObject(id) {
  if (!S.objects.has(id)) {
    S.objects.set(id, { prompts: new Map() });
    renderObjects();
  }
}

// ---------------------------------------------------------------- drawing
const canvas = $("#canvas");
const ctx = canvas.getContext("2d", { willReadFrequently: true });

function frameImage(t) {
  let img = S.images.get(t);
  if (!img) {
    img = new Image();
    img.decoding = "async";
    img.src = sessionPath(`/frames/${t}`);
    img.onload = () => { if (t === S.frame) render(); };
    S.images.set(t, img);
  }
  return img;
}

function fitCanvas() {
  if (!S.session) return;
  const stage = $("#stage");
  const { width: w, height: h } = S.session;
  const maxW = stage.clientWidth - 16, maxH = Math.max(240, window.innerHeight * 0.62);
  const scale = Math.min(maxW / w, maxH / h);
  canvas.style.width = `${Math.floor(w * scale)}px`;
  canvas.style.height = `${Math.floor(h * scale)}px`;
  canvas.style.imageRendering = scale >= 2 ? "pixelated" : "auto"; // small videos stay crisp
}

function render() {
  if (!S.session) return;
  const { width: w, height: h } = S.session;
  const img = frameImage(S.frame);
  for (const d of [1, 2, -1]) { // prefetch neighbours
    const t = S.frame + d;
    if (t >= 0 && t < S.session.num_frames) frameImage(t);
  }
  ctx.clearRect(0, 0, w, h);
  if (img.complete && img.naturalWidth) ctx.drawImage(img, 0, 0, w, h);
  const m = S.masks.get(S.frame);
  if (m) {
    const over = ctx.getImageData(0, 0, w, h);
    const px = over.data, ids = m.ids;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!id) continue;
      const x = i % w, y = (i - x) / w;
      const edge = (x > 0 && ids[i - 1] !== id) || (x < w - 1 && ids[i + 1] !== id) ||
                   (y > 0 && ids[i - w] !== id) || (y < h - 1 && ids[i + w] !== id);
      const [r, g, b] = colour(id);
      const a = edge ? 1 : 0.5;
      const o = i * 4;
      px[o] = px[o] * (1 - a) + r * a;
      px[o + 1] = px[o + 1] * (1 - a) + g * a;
      px[o + 2] = px[o + 2] * (1 - a) + b * a;
    }
    ctx.putImageData(over, 0, 0);
  }
  drawPrompts();
  $("#scrub").value = String(S.frame);
  $("#frame-label").textContent = `${S.frame} / ${S.session.num_frames - 1}`;
  renderSwimlane();
  renderObjects();
}

function drawPrompts() {
  const scale = canvas.clientWidth ? canvas.clientWidth / canvas.width : 1;
  const r = Math.max(1.5, 6 / scale); // about 6 screen pixels
  for (const [id, obj] of S.objects) {
    const p = obj.prompts.get(S.frame);
    if (!p) continue;
    if (p.box) {
      ctx.strokeStyle = css(id);
      ctx.lineWidth = Math.max(1, r / 2);
      ctx.strokeRect(p.box[0], p.box[1], p.box[2] - p.box[0], p.box[3] - p.box[1]);
    }
    p.points.forEach(([x, y], i) => {
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = p.labels[i] ? "#3ecf8e" : "#ff5d5d";
      ctx.fill();
      ctx.lineWidth = Math.max(0.5, 1.5 / scale);
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    });
  }
  if (S.drag && S.drag.moved) {
    const { x0, y0, x1, y1 } = S.drag;
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = S.active ? css(S.active) : "#fff";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    ctx.setLineDash([]);
  }
}

function renderSwimlane() {
  const lane = $("#swimlane");
  const ids = [...S.objects.keys()];
  const rows = Math.max(1, ids.length);
  const rowH = 10;
  lane.height = rows * rowH + 8;
  lane.style.height = `${lane.height}px`;
  lane.width = lane.clientWidth || 600;
  const g = lane.getContext("2d");
  g.clearRect(0, 0, lane.width, lane.height);
  if (!S.session) return;
  const n = S.session.num_frames;
  const cw = lane.width / n;
  ids.forEach((id, row) => {
    g.fillStyle = css(id);
    for (const [t, m] of S.masks) {
      if (m.present.has(id)) g.fillRect(t * cw, 4 + row * rowH, Math.max(1, cw - (cw > 3 ? 1 : 0)), rowH - 2);
    }
    g.fillStyle = "#fff";
    for (const t of S.objects.get(id).prompts.keys()) g.fillRect(t * cw + cw / 2 - 1, 2 + row * rowH, 2, 3);
  });
  g.fillStyle = "rgba(255,255,255,0.8)";
  g.fillRect(S.frame * cw + cw / 2 - 1, 0, 2, lane.height);
}

function renderObjects() {
  const ul = $("#objects");
  ul.textContent = "";
  const m = S.session ? S.masks.get(S.frame) : null;
  for (const id of [...S.objects.keys()].sort((a, b) => a - b)) {
    const li = document.createElement("li");
    li.dataset.objId = String(id);
    if (id === S.active) li.classList.add("active");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = css(id);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `Object ${id}`;
    const count = document.createElement("span");
    count.className = "count";
    const area = m && m.present.get(id);
    count.textContent = area ? `${area} px` : "";
    const rm = document.createElement("button");
    rm.className = "remove";
    rm.type = "button";
    rm.title = `remove object ${id}`;
    rm.textContent = "✕";
    rm.addEventListener("click", (ev) => { ev.stopPropagation(); removeObject(id); });
    li.append(sw, name, count, rm);
    li.addEventListener("click", () => { S.active = id; renderObjects(); });
    ul.append(li);
  }
}

function setControls(enabled) {
  for (const el of document.querySelectorAll("aside button, #prev, #next, #scrub")) el.disabled = !enabled;
  $("#cancel").disabled = !S.propagating;
  if (S.propagating) for (const el of document.querySelectorAll("aside button:not(#cancel)")) el.disabled = true;
}

// ---------------------------------------------------------------- session
async function closeSession() {
  if (!S.session) return;
  const id = S.session.id;
  clearInterval(S.pingTimer);
  if (S.ws) { S.ws.onclose = null; S.ws.close(); S.ws = null; }
  try { await fetch(`/api/sessions/${id}`, { method: "DELETE" }); } catch (e) { /* gone already */ }
  S.session = null;
}

async function startSession(info) {
  S.session = info;
  S.frame = 0;
  S.objects = new Map();
  S.masks = new Map();
  S.images = new Map();
  S.serverIds = new Set();
  S.active = null;
  canvas.width = info.width;
  canvas.height = info.height;
  $("#stage").classList.add("has-video");
  fitCanvas();
  const scrub = $("#scrub");
  scrub.max = String(info.num_frames - 1);
  scrub.value = "0";
  $("#downloads").textContent = "";
  setProgress(0, 0, "");
  addObject();
  connect();
  setControls(true);
  render();
  status(`Opened ${info.name}: ${info.num_frames} frames, ${info.width}×${info.height}. Click the object to track.`, "ok");
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}${sessionPath("/ws")}`);
  S.ws = ws;
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "closed") { status(`Session closed: ${msg.reason}. Open the video again.`, "error"); setControls(false); }
  };
  ws.onclose = () => { if (S.ws === ws) { status("Lost the connection to the server; open the video again.", "error"); setControls(false); } };
  clearInterval(S.pingTimer);
  S.pingTimer = setInterval(() => { if (ws.readyState === 1) ws.send(JSON.stringify({ op: "ping" })); }, 20000);
}

async function openPath(path) {
  status(`Opening ${path}…`);
  try {
    await closeSession();
    const res = await api("/api/sessions", { method: "POST", body: { path } });
    await startSession(await res.json());
  } catch (e) { fail(e); }
}

async function upload(files) {
  if (!files.length) return;
  status(`Uploading ${files.length} file(s)…`);
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  try {
    await closeSession();
    const res = await api("/api/sessions/upload", { method: "POST", form });
    await startSession(await res.json());
  } catch (e) { fail(e); }
}

async function loadVideoList() {
  try {
    const info = await (await api("/api/info")).json();
    $("#model").textContent = info.model || "model";
    const list = await (await api("/api/videos")).json();
    const sel = $("#video-list");
    sel.textContent = "";
    for (const v of list.videos) {
      const o = document.createElement("option");
      o.value = v.path;
      o.textContent = v.kind === "frames" ? `${v.path}/ (${v.frames} frames)` : v.path;
      sel.append(o);
    }
    if (!list.videos.length) {
      const o = document.createElement("option");
      o.textContent = `no videos under ${info.root}`;
      o.disabled = true;
      sel.append(o);
    }
  } catch (e) { fail(e); }
}

// ---------------------------------------------------------------- objects and prompts
function addObject() {
  const used = [...S.objects.keys()];
  let id = 1;
  while (used.includes(id)) id += 1;
  if (id > MAX_ID) { status(`at most ${MAX_ID} objects`, "error"); return; }
  S.objects.set(id, { prompts: new Map() });
  S.active = id;
  renderObjects();
  renderSwimlane();
}

async function sendPrompts(id, t) {
  const p = S.objects.get(id).prompts.get(t) || { points: [], labels: [], box: null };
  const empty = !p.points.length && !p.box;
  try {
    let res;
    if (empty) {
      S.objects.get(id).prompts.delete(t);
      if (!S.serverIds.has(id)) { render(); return; }
      res = await api(sessionPath("/clear"), { method: "POST", body: { frame: t, obj_id: id } });
    } else {
      res = await api(sessionPath("/prompts"), { method: "POST",
        body: { frame: t, obj_id: id, points: p.points, labels: p.labels, box: p.box } });
    }
    storeFrame(await res.json());
    render();
    const area = S.masks.get(t).present.get(id) || 0;
    status(`Object ${id} on frame ${t}: ${area} pixels.`, "ok");
  } catch (e) { fail(e); }
}

function activePrompts(t) {
  if (S.active === null || !S.objects.has(S.active)) addObject();
  const obj = S.objects.get(S.active);
  if (!obj.prompts.has(t)) obj.prompts.set(t, { points: [], labels: [], box: null });
  return obj.prompts.get(t);
}

function canvasXY(ev) {
  const r = canvas.getBoundingClientRect();
  const x = (ev.clientX - r.left) * (canvas.width / r.width);
  const y = (ev.clientY - r.top) * (canvas.height / r.height);
  return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
}

const tool = () => document.querySelector('input[name="tool"]:checked').value;

canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
canvas.addEventListener("mousedown", (ev) => {
  if (!S.session || S.propagating) return;
  const [x, y] = canvasXY(ev);
  S.drag = { x0: x, y0: y, x1: x, y1: y, moved: false, negative: ev.button === 2 || ev.shiftKey };
});
canvas.addEventListener("mousemove", (ev) => {
  if (!S.drag) return;
  const [x, y] = canvasXY(ev);
  S.drag.x1 = x; S.drag.y1 = y;
  const min = Math.max(4, canvas.width / 100);
  if (Math.abs(x - S.drag.x0) > min || Math.abs(y - S.drag.y0) > min) S.drag.moved = true;
  if (S.drag.moved) render();
});
window.addEventListener("mouseup", (ev) => {
  const d = S.drag;
  S.drag = null;
  if (!d || !S.session) return;
  const p = activePrompts(S.frame);
  const id = S.active;
  if (d.moved) {
    p.box = [Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.max(d.x0, d.x1), Math.max(d.y0, d.y1)].map(Math.round);
  } else if (ev.target === canvas) {
    if (tool() === "box") { render(); return; }
    p.points.push([Math.round(d.x0 * 10) / 10, Math.round(d.y0 * 10) / 10]);
    p.labels.push(d.negative || tool() === "neg" ? 0 : 1);
  } else { render(); return; }
  render();
  sendPrompts(id, S.frame);
});

function undo() {
  if (!S.session || S.active === null) return;
  const p = S.objects.get(S.active)?.prompts.get(S.frame);
  if (!p) return;
  if (p.points.length) { p.points.pop(); p.labels.pop(); } else p.box = null;
  sendPrompts(S.active, S.frame);
}

function clearFrame() {
  if (!S.session || S.active === null) return;
  const obj = S.objects.get(S.active);
  if (!obj.prompts.has(S.frame)) { status(`Object ${S.active} has no prompts on frame ${S.frame}.`); return; }
  obj.prompts.set(S.frame, { points: [], labels: [], box: null });
  sendPrompts(S.active, S.frame);
}

async function removeObject(id) {
  try {
    let payload = null;
    if (S.serverIds.has(id)) payload = await (await api(sessionPath("/remove_object"), { method: "POST", body: { obj_id: id } })).json();
    S.objects.delete(id);
    if (payload) {
      S.masks = new Map();
      for (const f of payload.frames) storeFrame(f);
      S.serverIds = new Set(payload.obj_ids);
    }
    if (S.active === id) S.active = S.objects.size ? [...S.objects.keys()][0] : null;
    render();
    status(`Removed object ${id}.`, "ok");
  } catch (e) { fail(e); }
}

async function resetAll() {
  try {
    await api(sessionPath("/reset"), { method: "POST" });
    S.objects = new Map();
    S.masks = new Map();
    S.serverIds = new Set();
    S.active = null;
    addObject();
    $("#downloads").textContent = "";
    setProgress(0, 0, "");
    render();
    status("Reset: every object and mask is gone.", "ok");
  } catch (e) { fail(e); }
}

// ---------------------------------------------------------------- propagation
function setProgress(done, total, label) {
  const bar = $("#progress");
  bar.max = Math.max(1, total);
  bar.value = done;
  $("#progress-label").textContent = label;
}

async function propagate(direction) {
  if (!S.session || S.propagating) return;
  S.propagating = true;
  setControls(true);
  const start = S.frame;
  setProgress(0, 1, "starting…");
  status(`Propagating ${direction} from frame ${start}…`);
  let end = null;
  try {
    const res = await api(sessionPath("/propagate"), { method: "POST", body: { direction, start } });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    let total = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const ev = JSON.parse(line);
        if (ev.type === "start") { total = ev.total; setProgress(0, total, `0 / ${total}`); }
        else if (ev.type === "frame") {
          storeFrame(ev);
          setProgress(ev.done, ev.total, `${ev.done} / ${ev.total} frames`);
          if ($("#follow").checked) S.frame = ev.frame;
          render();
        } else if (ev.type === "end") end = ev;
        else if (ev.type === "error") throw new Error(ev.message);
      }
    }
    if (end && end.cancelled) status(`Cancelled after ${end.frames} frames.`);
    else if (end) status(`Propagated ${direction}: ${end.frames} frames.`, "ok");
    $("#progress-label").textContent = end && end.cancelled ? `cancelled at ${end.frames} / ${total}` : `done: ${end ? end.frames : 0} / ${total}`;
  } catch (e) { fail(e); }
  finally {
    S.propagating = false;
    setControls(Boolean(S.session));
    document.body.dataset.propagated = String((Number(document.body.dataset.propagated) || 0) + 1);
  }
}

async function cancel() {
  if (!S.propagating) return;
  try { await api(sessionPath("/cancel"), { method: "POST" }); status("Cancelling…"); } catch (e) { fail(e); }
}

// ---------------------------------------------------------------- export
async function exportFiles() {
  const formats = [...document.querySelectorAll('input[name="fmt"]:checked')].map((el) => el.value);
  if (!formats.length) { status("Pick at least one export format.", "error"); return; }
  status("Exporting…");
  try {
    const res = await api(sessionPath("/export"), { method: "POST", body: { formats } });
    const { files } = await res.json();
    const ul = $("#downloads");
    ul.textContent = "";
    for (const f of files) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = f.url;
      a.download = f.name;
      a.dataset.format = f.format;
      a.textContent = `${f.name} (${(f.bytes / 1024).toFixed(1)} KiB)`;
      li.append(a);
      ul.append(li);
    }
    status(`Exported ${files.length} file(s).`, "ok");
  } catch (e) { fail(e); }
}

// ---------------------------------------------------------------- wiring
function goto(t) {
  if (!S.session) return;
  S.frame = Math.min(Math.max(t, 0), S.session.num_frames - 1);
  render();
}

$("#open-btn").addEventListener("click", () => { const v = $("#video-list").value; if (v) openPath(v); });
$("#upload-file").addEventListener("change", (ev) => upload([...ev.target.files]));
$("#upload-folder").addEventListener("change", (ev) =>
  upload([...ev.target.files].filter((f) => /\.(jpe?g|png)$/i.test(f.name))));
$("#scrub").addEventListener("input", (ev) => goto(Number(ev.target.value)));
$("#prev").addEventListener("click", () => goto(S.frame - 1));
$("#next").addEventListener("click", () => goto(S.frame + 1));
$("#add-object").addEventListener("click", addObject);
$("#undo").addEventListener("click", undo);
$("#clear-frame").addEventListener("click", clearFrame);
$("#reset").addEventListener("click", resetAll);
$("#cancel").addEventListener("click", cancel);
$("#export").addEventListener("click", exportFiles);
for (const b of document.querySelectorAll(".prop")) b.addEventListener("click", () => propagate(b.dataset.dir));
window.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT" && ev.target.type !== "range" || ev.target.tagName === "SELECT") return;
  if (ev.key === "ArrowLeft") goto(S.frame - 1);
  else if (ev.key === "ArrowRight") goto(S.frame + 1);
  else if (ev.key === "n" && S.session) addObject();
  else if (ev.key === "z" && S.session) undo();
  else if (ev.key === "p" && S.session) propagate("both");
  else if (ev.key === "Escape") cancel();
});
window.addEventListener("resize", () => { fitCanvas(); renderSwimlane(); });

// read-only view for tests and the console: which frames have masks, and the id map of a frame
window.threeam = {
  session: () => (S.session ? { ...S.session } : null),
  framesWithMasks: () => [...S.masks.keys()].sort((a, b) => a - b),
  present: (t) => Object.fromEntries(S.masks.get(t)?.present || []),
  idMap: (t) => (S.masks.has(t) ? Array.from(S.masks.get(t).ids) : null),
  frame: () => S.frame,
  frameLoaded: () => Boolean(S.images.get(S.frame)?.complete && S.images.get(S.frame).naturalWidth),
  propagating: () => S.propagating,
};

setControls(false);
loadVideoList();
