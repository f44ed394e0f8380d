// reins feedback: model suggestions, pre-filled. A field with `data-suggested` starts with
// the suggested answer chosen (as if the annotator had picked it) and a visible "suggested
// by" note that screen readers read with the field; when the annotator changes the answer
// the note says so. Submitting keeps whatever is chosen; the server records per question
// whether the suggestion was kept unchanged.
(function () {
  "use strict";
  const L = window.reinsLabel;
  if (!L) return;
  const spanKey = (list) => JSON.stringify((list || []).map((s) => [s.start, s.end, s.tag]));

  function current(f, i) {
    switch (f.dataset.kind) {
      case "ranking": return JSON.stringify(L.state[i] || []);
      case "spans": return spanKey(L.spans[Number(f.dataset.pos)]);
      case "critique": return f.querySelector("textarea").value;
      default: return L.state[i];
    }
  }
  function suggested(f, v) {
    if (f.dataset.kind === "ranking") return JSON.stringify(v);
    if (f.dataset.kind === "spans") return spanKey(v);
    return String(v);
  }

  function update(f, i, v) {
    const note = f.querySelector(".suggested");
    if (!note) return;
    const same = current(f, i) === suggested(f, v);
    note.classList.toggle("changed", !same);
    note.textContent = same
      ? "Pre-filled, suggested by " + note.dataset.source + ": check it"
      : "Changed from the suggestion of " + note.dataset.source;
  }

  L.fields.forEach((f, i) => {
    const raw = f.dataset.suggested;
    if (raw === undefined || raw === "") return;
    let v;
    try { v = JSON.parse(raw); } catch (e) { return; }
    switch (f.dataset.kind) {
      case "ranking":
        L.state[i] = v.slice();
        f.querySelector(".ranking-state").textContent = v.map((p) => String.fromCharCode(65 + p)).join(" > ");
        break;
      case "spans":
        L.spans[Number(f.dataset.pos)] = v.map((s) => ({ start: s.start, end: s.end, tag: s.tag }));
        L.renderSpans(Number(f.dataset.pos));
        break;
      case "critique":
        f.querySelector("textarea").value = v;
        f.querySelector("textarea").addEventListener("input", () => update(f, i, v));
        break;
      default: {
        const btn = Array.from(f.querySelectorAll(".opt")).find((b) => b.dataset.value === String(v));
        if (!btn) return;
        L.state[i] = btn.dataset.value;
        f.querySelectorAll(".opt").forEach((b) => {
          b.classList.toggle("selected", b === btn);
          b.setAttribute("aria-pressed", String(b === btn));
        });
      }
    }
    f.classList.add("answered", "prefilled");
    f.addEventListener("reins:answer", () => update(f, i, v));
  });
})();
