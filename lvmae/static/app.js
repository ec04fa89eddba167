// lvmae serve's page: a search box, result cards that play the moment, a video view with its timeline.
// Views follow the URL's hash: #q=TEXT&k=N (search), #like=ID&t=S (moments like a segment), #video=ID&t=S.
"use strict";

const $ = (selector) => document.querySelector(selector);
const MAX_ROWS = 1000; // hidden-segment rows shown in the video view

function clock(seconds) {
  const s = Math.floor(Math.max(seconds, 0) + 1e-6);
  const two = (n) => String(n).padStart(2, "0");
  return `${Math.floor(s / 3600)}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function playFrom(video, seconds, play = true) {
  const go = () => {
    video.currentTime = seconds;
    if (play) video.play().catch(() => {}); // a browser that refuses to autoplay still shows the frame
  };
  if (video.readyState >= 1) go();
  else video.addEventListener("loadedmetadata", go, { once: true });
}

function status(text, isError = false) {
  const node = $("#status");
  node.textContent = text;
  node.className = isError ? "error" : "muted";
}

// --- search -------------------------------------------------------------------------------------------

function card(m) {
  // The player opens at the moment, not at the video's first frame: a media fragment, and a seek once the
  // metadata is in for a browser that ignores fragments.
  const video = el("video", { class: "clip", src: `${m.media}#t=${m.start}`, preload: "metadata", playsinline: "" });
  video.muted = true;
  playFrom(video, m.start, false);
  const strip = el(
    "div",
    { class: "strip" },
    ...m.thumbnails.map((t) => el("img", { src: t.url, alt: `frame at ${clock(t.t)}`, loading: "lazy" })),
  );
  const here = `video=${encodeURIComponent(m.video_id)}&t=${m.start}`;
  const node = el(
    "article",
    { class: "card", "data-video": m.video_id, "data-start": m.start },
    strip,
    video,
    el("div", { class: "when", text: `${clock(m.start)}–${clock(m.end)}` }),
    el("div", { class: "muted", text: `#${m.rank} · ${m.video_id} · score ${m.score.toFixed(3)}` }),
    el("div", { class: "caption", text: m.caption || "" }),
    el(
      "div",
      { class: "actions" },
      el("a", { href: `#${here}`, class: "open-video", text: "timeline" }),
      el("a", { href: `#like=${encodeURIComponent(m.video_id)}&t=${m.best[0]}`, class: "like", text: "more like this" }),
    ),
  );
  node.addEventListener("click", (event) => {
    if (event.target.closest("a") || event.target === video) return; // links navigate, the player has its own controls
    playFrom(video, m.start);
  });
  return node;
}

function showResults(answer) {
  const results = $("#results");
  results.replaceChildren(...answer.moments.map(card));
  const n = answer.moments.length;
  status(`"${answer.query}": ${n} moment${n === 1 ? "" : "s"}`);
}

async function runSearch(params) {
  $("#video-view").hidden = true;
  $("#results-view").hidden = false;
  pausePlayer();
  const k = params.get("k") || $("#k").value || 10;
  try {
    if (params.has("like")) {
      status("searching…");
      const t = params.get("t") || 0;
      showResults(await getJSON(`/api/like?video=${encodeURIComponent(params.get("like"))}&t=${t}&k=${k}`));
    } else if (params.has("q")) {
      $("#q").value = params.get("q");
      status("searching…");
      showResults(await getJSON(`/api/search?q=${encodeURIComponent(params.get("q"))}&k=${k}`));
    } else {
      $("#results").replaceChildren();
      status("Type what to look for: the moments that show it come back with their times and frames.");
    }
  } catch (err) {
    $("#results").replaceChildren();
    status(err.message, true);
  }
}

// --- a video's timeline -------------------------------------------------------------------------------

function pausePlayer() {
  const player = $("#player");
  if (!player.paused) player.pause();
}

function colourOf(text) {
  let h = 0;
  for (const c of text) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return `hsl(${h % 360}, 55%, 62%)`;
}

function lane(name, className = "") {
  return el("div", { class: `lane ${className}` }, el("span", { class: "name", text: name }));
}

function bar(from, to, total, className, title, seek) {
  const node = el("div", {
    class: `seg ${className}`,
    title,
    style: `left:${(100 * from) / total}%;width:${Math.max((100 * (to - from)) / total, 0.15)}%`,
    "data-start": from,
  });
  node.addEventListener("click", () => seek(from));
  return node;
}

function runs(segments, keyOf) {
  // [first, last] index pairs of consecutive segments with the same non-null key
  const out = [];
  segments.forEach((s, i) => {
    const key = keyOf(s);
    if (key === null) return;
    const last = out[out.length - 1];
    if (last && last.key === key && last.to === i - 1) last.to = i;
    else out.push({ key, from: i, to: i });
  });
  return out;
}

function drawTimeline(record, seek) {
  const segs = record.segments;
  const total = segs.length ? segs[segs.length - 1].end : 1;
  const timeline = $("#timeline");
  const truth = lane(record.truth && record.truth !== "original top-1" ? "truth" : "original top-1", "truth");
  for (const r of runs(segs, (s) => (s.truth && s.step >= 0 ? `${s.step}\u0000${s.truth}` : null))) {
    const caption = segs[r.from].truth;
    const node = bar(segs[r.from].start, segs[r.to].end, total, "band", `${clock(segs[r.from].start)} ${caption}`, seek);
    node.style.background = colourOf(caption);
    truth.append(node);
  }
  const importance = lane("importance", "importance");
  // importance from its lowest (bottom) to its highest (top) in this video
  const values = segs.map((s) => s.importance);
  const low = Math.min(...values);
  const range = Math.max(Math.max(...values) - low, 1e-9);
  const points = segs.map((s) => `${((s.start + s.end) / 2 / total) * 1000},${39 - ((s.importance - low) / range) * 37}`).join(" ");
  importance.insertAdjacentHTML(
    "beforeend",
    `<svg viewBox="0 0 1000 40" preserveAspectRatio="none"><polyline fill="none" stroke="#444" stroke-width="1.2" vector-effect="non-scaling-stroke" points="${points}"/></svg>`,
  );
  importance.querySelector("svg").addEventListener("click", (event) => {
    const box = event.currentTarget.getBoundingClientRect();
    seek(((event.clientX - box.left) / box.width) * total);
  });
  const lanes = [truth, importance];
  if (record.decoders.length) {
    const hidden = lane("hidden", "hidden");
    for (const r of runs(segs, (s) => (s.hidden ? 1 : null))) {
      hidden.append(bar(segs[r.from].start, segs[r.to].end, total, "hidden", `${clock(segs[r.from].start)}–${clock(segs[r.to].end)} hidden`, seek));
    }
    lanes.push(hidden);
    for (const name of record.decoders) {
      const decoded = lane(`decoder ${name}`, "decoder");
      segs.forEach((s) => {
        const tops = s.decoders[name];
        if (!tops) return;
        const hit = tops[0] === s.truth ? "hit" : "miss";
        decoded.append(bar(s.start, s.end, total, hit, `${clock(s.start)} truth: ${s.truth}\n${tops.join("\n")}`, seek));
      });
      lanes.push(decoded);
    }
  }
  const playhead = el("div", { class: "playhead" });
  timeline.replaceChildren(...lanes, el("div", { class: "playhead-lane" }, playhead));
  return (t) => (playhead.style.left = `${(100 * t) / total}%`);
}

function hiddenTable(record, seek) {
  const segs = record.segments.filter((s) => s.hidden);
  const table = $("#hidden-table");
  $("#hidden-heading").hidden = table.hidden = !record.decoders.length;
  if (!record.decoders.length) return;
  const step = Math.max(1, Math.ceil(segs.length / MAX_ROWS));
  const head = el("tr", {}, ...["time", "truth", "importance", ...record.decoders.map((n) => `decoder ${n} top-3`), "copy-nearest top-1"].map((h) => el("th", { text: h })));
  const captions = (list, truth) => {
    const cell = el("td");
    list.forEach((c, i) => {
      if (i) cell.append(el("br"));
      cell.append(el("span", { class: c === truth ? "hit" : "miss", text: c }));
    });
    return cell;
  };
  const rows = segs
    .filter((_, i) => i % step === 0)
    .map((s) => {
      const row = el(
        "tr",
        { class: "seekable", "data-start": s.start },
        el("td", { class: "num", text: clock(s.start) + (s.boundary ? " boundary" : "") + (s.long_gap ? " long gap" : "") }),
        el("td", { text: s.truth || "" }),
        el("td", { class: "num", text: s.importance.toFixed(3) }),
        ...record.decoders.map((n) => (s.decoders[n] ? captions(s.decoders[n], s.truth) : el("td", { class: "muted", text: "not reconstructed" }))),
        s.copy_nearest ? captions([s.copy_nearest], s.truth) : el("td"),
      );
      row.addEventListener("click", () => seek(s.start));
      return row;
    });
  table.replaceChildren(head, ...rows);
}

async function openVideo(params) {
  const id = params.get("video");
  $("#results-view").hidden = true;
  $("#video-view").hidden = false;
  $("#video-title").textContent = id;
  $("#video-facts").textContent = "loading…";
  $("#timeline").replaceChildren();
  let record;
  try {
    record = await getJSON(`/api/video/${encodeURIComponent(id)}`);
  } catch (err) {
    $("#video-facts").textContent = err.message;
    $("#video-facts").className = "error";
    return;
  }
  const player = $("#player");
  const seek = (t) => playFrom(player, t);
  const hidden = record.segments.filter((s) => s.hidden).length;
  const facts = [
    `${record.segments.length} segments, ${clock(record.duration || 0)}`,
    record.label ? `label ${record.label}` : null,
    record.checkpoint
      ? `reconstructed by ${record.checkpoint}: ${record.mask} mask ${record.ratio}, seed ${record.seed}, ${hidden} hidden` +
        (record.held_out ? " (a video it never trained on)" : " (a video it trained on)")
      : "no checkpoint: no reconstructions",
    record.truth ? `truth: ${record.truth}` : null,
  ];
  $("#video-facts").className = "muted";
  $("#video-facts").textContent = facts.filter(Boolean).join(" · ");
  if (player.getAttribute("src") !== record.media) player.src = record.media;
  const move = drawTimeline(record, seek);
  player.ontimeupdate = () => move(player.currentTime);
  hiddenTable(record, seek);
  playFrom(player, Number(params.get("t") || 0), false);
}

// --- routing ------------------------------------------------------------------------------------------

function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("video")) openVideo(params);
  else runSearch(params);
}

$("#search").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("#q").value.trim();
  const next = `#q=${encodeURIComponent(q)}&k=${encodeURIComponent($("#k").value || 10)}`;
  if (location.hash === next) route();
  else location.hash = next;
});
window.addEventListener("hashchange", route);

getJSON("/api/info")
  .then((info) => {
    $("#about").textContent = `${info.videos} videos, ${info.segments.toLocaleString()} segments` + (info.checkpoint ? ` · ${info.checkpoint}` : "");
    $("#k").max = info.max_k;
    $("#examples").replaceChildren(
      ...info.examples.map((text) => el("button", { type: "button", text, onclick: () => (location.hash = `#q=${encodeURIComponent(text)}&k=${$("#k").value || 10}`) })),
    );
  })
  .catch((err) => status(err.message, true));
route();
