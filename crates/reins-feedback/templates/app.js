// reins feedback: keyboard-first labelling. Fields come from the server (data-driven);
// this script tracks the focused field, records choices, builds the answers object and
// submits it to the JSON API with the session's CSRF token and an idempotency key.
(function () {
  "use strict";
  const task = document.getElementById("task");
  if (!task) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const project = task.dataset.project;
  const assignment = task.dataset.assignment;
  const fields = Array.from(document.querySelectorAll(".field"));
  const status = document.getElementById("status");
  const started = Date.now();
  const key = assignment + "-" + Math.random().toString(36).slice(2);
  let focus = 0;
  let busy = false;
  const state = fields.map(() => null);   // the value chosen per field
  const spans = {};                       // display position → [{start, end, tag}]

  // Show the stored text exactly. The HTML parser drops a newline right after <pre> and
  // turns CRLF into LF, so the server-rendered text can differ from what is stored, and
  // span offsets are counted in the stored text. Text set through the DOM is kept as is.
  const data = JSON.parse(document.getElementById("task-data").textContent);
  document.querySelector("pre.prompt").textContent = data.prompt;
  document.querySelectorAll("pre.response").forEach((pre) => {
    pre.textContent = data.responses[Number(pre.dataset.pos)];
  });

  function setFocus(i) {
    focus = Math.max(0, Math.min(fields.length - 1, i));
    fields.forEach((f, j) => f.classList.toggle("focused", j === focus));
    const ta = fields[focus] && fields[focus].querySelector("textarea");
    if (ta) ta.focus(); else if (document.activeElement && document.activeElement.tagName === "TEXTAREA") document.activeElement.blur();
    moveRealFocus(fields[focus], ta);
  }

  // ---- real focus and screen-reader state ----
  // The focused field takes the browser's focus too, so a screen reader announces its
  // label (role=group, aria-labelledby) and the page scrolls it into view.
  let firstFocus = true;
  function moveRealFocus(f, ta) {
    // Not on page load: the prompt stays in view on a phone.
    if (f && !ta && document.activeElement !== f) f.focus({ preventScroll: firstFocus });
    firstFocus = false;
  }
  // Scales with more than ten points show their numbers as keys ("10", "11", ...). A digit
  // picks its option at once; when longer keys start with it ("1" and "10"), focus stays
  // on the field and the next digit extends it ("1" then "0" picks 10).
  let typed = "", typedIn = null;
  function optionForKey(f, key) {
    const opts = Array.from(f.querySelectorAll(".opt"));
    const longer = typed && typedIn === f && opts.find((b) => b.dataset.key === typed + key);
    if (longer) { typed = ""; return { btn: longer, stay: false }; }
    const btn = opts.find((b) => b.dataset.key === key);
    typed = btn && opts.some((b) => b.dataset.key.length > key.length && b.dataset.key.startsWith(key)) ? key : "";
    typedIn = f;
    return btn ? { btn: btn, stay: typed !== "" } : null;
  }
  function markPressed(f, btn) {
    f.querySelectorAll(".opt").forEach((b) => b.setAttribute("aria-pressed", String(b === btn)));
  }
  // ---- end of focus and screen-reader state ----

  // Offsets of the selection in a response's stored text, in Unicode scalar values (code
  // points, as the server counts them): `Array.from` counts an emoji once and a combining
  // mark as its own character.
  function selectionIn(pre) {
    const sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return null;
    const r = sel.getRangeAt(0);
    if (!pre.contains(r.startContainer) || !pre.contains(r.endContainer)) return null;
    const before = document.createRange();
    before.setStart(pre, 0);
    before.setEnd(r.startContainer, r.startOffset);
    const start = Array.from(before.toString()).length;
    const len = Array.from(r.toString()).length;
    return len > 0 ? { start: start, end: start + len } : null;
  }

  // Highlights and lists the spans of a response (spans.js); each can be removed.
  function renderSpans(pos) {
    const f = document.querySelector('.field[data-kind="spans"][data-pos="' + pos + '"]');
    const tags = f ? Array.from(f.querySelectorAll(".opt")).map((b) => b.dataset.value).filter((v) => v !== "clear") : [];
    window.reinsSpans.render(document.querySelector('pre.response[data-pos="' + pos + '"]'),
      document.querySelector('ul.spans[data-pos="' + pos + '"]'), data.responses[pos], spans[pos] || [], tags,
      (j) => { spans[pos].splice(j, 1); renderSpans(pos); if (f) changed(f); });
  }

  // Tells listeners (suggestions.js) that a field's answer changed.
  function changed(f) { f.dispatchEvent(new CustomEvent("reins:answer", { bubbles: true })); }

  function choose(i, btn) {
    const f = fields[i];
    const kind = f.dataset.kind;
    const value = btn.dataset.value;
    if (kind === "ranking") {
      let r = state[i] || [];
      if (value === "reset") r = [];
      else if (!r.includes(Number(value))) r = r.concat([Number(value)]);
      state[i] = r;
      f.querySelector(".ranking-state").textContent = r.map((p) => String.fromCharCode(65 + p)).join(" > ");
      const n = f.querySelectorAll(".opt").length - 1;
      f.classList.toggle("answered", r.length === n);
      changed(f);
      if (r.length === n) setFocus(i + 1);
      return;
    }
    if (kind === "spans") {
      const pos = Number(f.dataset.pos);
      if (value === "clear") { spans[pos] = []; renderSpans(pos); changed(f); return; }
      const sel = selectionIn(document.querySelector('pre.response[data-pos="' + pos + '"]'));
      if (!sel) { status.textContent = "Select text in response " + String.fromCharCode(65 + pos) + " first."; return; }
      (spans[pos] = spans[pos] || []).push({ start: sel.start, end: sel.end, tag: value });
      window.getSelection().removeAllRanges();
      renderSpans(pos);
      f.classList.add("answered");
      changed(f);
      return;
    }
    state[i] = value;
    f.querySelectorAll(".opt").forEach((b) => b.classList.toggle("selected", b === btn));
    markPressed(f, btn);
    f.classList.add("answered");
    changed(f);
    setFocus(i + 1);
  }

  function answers() {
    const out = {};
    const n = document.querySelectorAll("pre.response").length;
    const missing = [];
    fields.forEach((f, i) => {
      const q = f.dataset.q, kind = f.dataset.kind, sub = f.dataset.sub, pos = Number(f.dataset.pos);
      const v = state[i];
      if (v === null && kind !== "critique" && kind !== "spans" && f.dataset.optional !== "true") missing.push(f.querySelector(".field-label").textContent);
      switch (kind) {
        case "pairwise":
          out[q] = out[q] || {};
          if (sub === "choice") out[q].choice = v; else if (v !== null) out[q].strength = Number(v);
          break;
        case "ranking": out[q] = { order: v || [] }; break;
        case "likert":
          out[q] = out[q] || {};
          (out[q][sub] = out[q][sub] || new Array(n).fill(null))[pos] = v === null ? null : Number(v);
          break;
        case "thumbs": (out[q] = out[q] || new Array(n).fill(null))[pos] = v === null ? null : v === "true"; break;
        case "spans": (out[q] = out[q] || new Array(n).fill(null))[pos] = spans[pos] || []; break;
        case "critique": (out[q] = out[q] || new Array(n).fill(""))[pos] = f.querySelector("textarea").value; break;
        case "principles":
          out[q] = out[q] || Array.from({ length: n }, () => []);
          out[q][pos][Number(sub)] = v === null ? null : v === "true";
          break;
      }
    });
    return { answers: out, missing: missing };
  }

  async function send(body) {
    if (busy) return;
    busy = true;
    body.assignment_id = assignment;
    body.idempotency_key = key;
    body.time_ms = Date.now() - started;
    status.textContent = "Saving…";
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        // An edit or a reviewer's correction saves elsewhere and then returns to its list.
        const url = task.dataset.submitUrl || "/api/projects/" + encodeURIComponent(project) + "/submissions";
        const res = await fetch(url, {
          method: "POST", credentials: "same-origin",
          headers: { "content-type": "application/json", "x-csrf-token": csrf },
          body: JSON.stringify(body),
        });
        if (res.ok) {
          status.textContent = "Saved.";
          if (task.dataset.after) window.location.href = task.dataset.after; else window.location.reload();
          return;
        }
        const err = await res.json().catch(() => ({ error: res.statusText }));
        status.textContent = "Not saved: " + err.error;
        if (res.status < 500 && res.status !== 429) break;
      } catch (e) {
        status.textContent = "Network error, retrying…";
      }
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
    }
    busy = false;
  }

  function submit() {
    const a = answers();
    if (a.missing.length) { status.textContent = "Still to answer: " + a.missing.join("; "); return; }
    send({ answers: a.answers });
  }

  function skip() {
    const reason = window.prompt("Why skip this item? (e.g. unclear prompt, cannot judge, offensive content)");
    if (reason && reason.trim()) send({ skip: reason.trim() });
  }

  fields.forEach((f, i) => {
    f.addEventListener("click", (e) => {
      const btn = e.target.closest(".opt");
      setFocus(i);
      if (btn) choose(i, btn);
    });
  });
  document.getElementById("submit").addEventListener("click", submit);
  const skipButton = document.getElementById("skip");   // absent on edit forms
  if (skipButton) skipButton.addEventListener("click", skip);

  document.addEventListener("keydown", (e) => {
    const inText = document.activeElement && document.activeElement.tagName === "TEXTAREA";
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); return; }
    if (e.key === "Tab") { e.preventDefault(); setFocus(focus + (e.shiftKey ? -1 : 1)); return; }
    if (inText) { if (e.key === "Escape") document.activeElement.blur(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Enter") { e.preventDefault(); submit(); return; }
    if (e.key === "Escape") { e.preventDefault(); if (skipButton) skip(); return; }
    if (e.key === "j") { setFocus(focus + 1); return; }
    if (e.key === "k") { setFocus(focus - 1); return; }
    const f = fields[focus];
    if (!f) return;
    // In a spans field, Backspace removes the span added last (the list's buttons need a pointer).
    if (e.key === "Backspace" && f.dataset.kind === "spans") {
      const list = spans[Number(f.dataset.pos)] || [];
      if (list.length) { e.preventDefault(); list.pop(); renderSpans(Number(f.dataset.pos)); changed(f); }
      return;
    }
    const hit = optionForKey(f, e.key);
    if (hit) { e.preventDefault(); const at = focus; choose(at, hit.btn); if (hit.stay) setFocus(at); }
  });
  // A label being changed starts from its answer: review.js replays the choices as clicks;
  // span lists cannot be clicked back, so they are loaded here.
  const prefill = document.getElementById("prefill");
  if (prefill) {
    const given = JSON.parse(prefill.textContent);
    fields.forEach((f) => {
      const list = f.dataset.kind === "spans" && given[f.dataset.q] && given[f.dataset.q][Number(f.dataset.pos)];
      if (!list || !list.length) return;
      spans[Number(f.dataset.pos)] = list.map((s) => ({ start: s.start, end: s.end, tag: s.tag }));
      renderSpans(Number(f.dataset.pos));
      f.classList.add("answered");
    });
  }
  setFocus(0);
  // For suggestions.js, which pre-fills suggested answers into this page's state.
  window.reinsLabel = { fields: fields, state: state, spans: spans, renderSpans: renderSpans };
})();
