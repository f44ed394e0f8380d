// reins feedback: fixing and reviewing labels. On the label page: drafts kept across
// reloads, the "my recent labels" key (u), flag for review (f), gold feedback after a gold
// item, and pre-filling the form when changing a label. On the review pages: accept,
// reject and adjudicate through the JSON API. Choices are replayed as clicks on the form's
// own options, so app.js stays the one place that records answers.
(function () {
  "use strict";
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  async function post(url, body) {
    const res = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(body),
    });
    if (res.ok) return null;
    const err = await res.json().catch(() => ({ error: res.statusText }));
    return err.error || res.statusText;
  }

  function typing() {
    const a = document.activeElement;
    return a && (a.tagName === "TEXTAREA" || a.tagName === "INPUT" || a.tagName === "SELECT");
  }

  // ---- the label page ----
  const page = document.querySelector(".label-page");
  const task = document.getElementById("task");
  if (page) {
    const project = page.dataset.project;
    const user = page.dataset.user;
    const fields = Array.from(document.querySelectorAll("#task .field"));
    const editing = task && task.dataset.submitUrl;

    // A field's value as its options show it: the pressed option, the ranking so far
    // (positions, best first), or the text typed.
    function snapshot() {
      return fields.map((f) => {
        if (f.dataset.kind === "critique") return f.querySelector("textarea").value;
        if (f.dataset.kind === "ranking") {
          const s = f.querySelector(".ranking-state").textContent;
          return s ? s.split(" > ").map((l) => String(l.charCodeAt(0) - 65)) : null;
        }
        const b = f.querySelector('.opt[aria-pressed="true"]');
        return b ? b.dataset.value : null;
      });
    }
    function restore(values) {
      values.forEach((v, i) => {
        const f = fields[i];
        if (!f || v === null || v === undefined) return;
        if (f.dataset.kind === "critique") { f.querySelector("textarea").value = v; return; }
        const click = (val) => {
          const b = Array.from(f.querySelectorAll(".opt")).find((o) => o.dataset.value === String(val));
          if (b) b.click();
        };
        if (Array.isArray(v)) { click("reset"); v.forEach(click); } else click(v);
      });
      if (fields.length) fields[0].scrollIntoView({ block: "nearest" });
    }
    // An answer as the API takes it (display positions) → one value per field.
    function fromAnswers(a) {
      return fields.map((f) => {
        const q = a[f.dataset.q];
        if (q === undefined || q === null) return null;
        const pos = Number(f.dataset.pos), sub = f.dataset.sub;
        const s = (v) => (v === null || v === undefined ? null : String(v));
        switch (f.dataset.kind) {
          case "pairwise": return sub === "choice" ? s(q.choice) : s(q.strength);
          case "ranking": return (q.order || []).map(String);
          case "likert": return q[sub] ? s(q[sub][pos]) : null;
          case "thumbs": return s(q[pos]);
          case "principles": return q[pos] ? s(q[pos][Number(sub)]) : null;
          case "critique": return q[pos] || "";
          default: return null;   // spans: app.js loads them from #prefill
        }
      });
    }

    if (editing) {
      const pre = document.getElementById("prefill");
      if (pre) restore(fromAnswers(JSON.parse(pre.textContent)));
    } else if (task && user) {
      // Drafts: one per user and assignment, so people sharing a browser never see each
      // other's. A draft whose assignment is no longer on screen was submitted: dropped.
      const prefix = "reins-draft:" + user + ":";
      const key = prefix + task.dataset.assignment;
      for (let i = localStorage.length - 1; i >= 0; i--) {
        const k = localStorage.key(i);
        if (k && k.startsWith(prefix) && k !== key) localStorage.removeItem(k);
      }
      let restoring = false;
      const saved = localStorage.getItem(key);
      if (saved) {
        restoring = true;
        try { restore(JSON.parse(saved)); } catch (e) { localStorage.removeItem(key); }
        restoring = false;
        const note = document.createElement("p");
        note.id = "draft-note";
        note.className = "hint";
        note.setAttribute("role", "status");
        note.textContent = "Your unsaved answers to this item were restored.";
        task.parentNode.insertBefore(note, task);
      }
      const save = () => setTimeout(() => {
        if (restoring) return;
        const v = snapshot();
        if (v.some((x) => x !== null && x !== "")) localStorage.setItem(key, JSON.stringify(v));
      }, 0);
      task.addEventListener("click", save);
      task.addEventListener("input", save);
      document.addEventListener("keyup", save);
    } else if (user) {
      // Nothing left to label: every draft of this user was submitted.
      const prefix = "reins-draft:" + user + ":";
      for (let i = localStorage.length - 1; i >= 0; i--) {
        const k = localStorage.key(i);
        if (k && k.startsWith(prefix)) localStorage.removeItem(k);
      }
    }

    // Flag for review: a note for the reviewers; the annotator still labels or skips.
    const flagBtn = document.getElementById("flag");
    const box = document.getElementById("flag-box");
    const note = document.getElementById("flag-note");
    const flagStatus = document.getElementById("flag-status");
    function openFlag() {
      box.hidden = false;
      flagBtn.setAttribute("aria-expanded", "true");
      note.focus();
    }
    function closeFlag() {
      box.hidden = true;
      flagBtn.setAttribute("aria-expanded", "false");
      flagBtn.focus();
    }
    async function sendFlag() {
      const text = note.value.trim();
      if (!text) { flagStatus.textContent = "Write what a reviewer should look at."; return; }
      const err = await post("/api/projects/" + encodeURIComponent(project) + "/flags",
        { assignment_id: task.dataset.assignment, note: text });
      if (err) { flagStatus.textContent = "Not flagged: " + err; return; }
      note.value = "";
      box.hidden = true;
      flagBtn.setAttribute("aria-expanded", "false");
      flagBtn.textContent = "Flagged for review ✓";
      flagBtn.disabled = true;
      document.getElementById("status").textContent = "Flagged for review. Now label or skip this item.";
    }
    if (flagBtn && box && task) {
      flagBtn.addEventListener("click", () => (box.hidden ? openFlag() : closeFlag()));
      document.getElementById("flag-send").addEventListener("click", sendFlag);
      // Keys typed in the note are the note's, not the form's shortcuts.
      note.addEventListener("keydown", (e) => {
        e.stopPropagation();
        if (e.key === "Escape") { e.preventDefault(); closeFlag(); }
        if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); sendFlag(); }
      });
    }

    document.addEventListener("keydown", (e) => {
      if (typing() || e.ctrlKey || e.metaKey || e.altKey) return;
      const mine = document.getElementById("mine-link");
      if (e.key === "u" && mine) { e.preventDefault(); window.location.href = mine.href; }
      if (e.key === "f" && flagBtn && !flagBtn.disabled && box) { e.preventDefault(); openFlag(); }
    });

    // Gold feedback: after a gold item, say once whether the answer matched.
    if (!editing && user) {
      fetch("/api/projects/" + encodeURIComponent(project) + "/mine", { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null))
        .then((v) => {
          const last = v && v.labels && v.labels[0];
          const seenKey = "reins-gold-seen:" + user;
          if (!last || !last.gold || localStorage.getItem(seenKey) === last.submission_id) return;
          localStorage.setItem(seenKey, last.submission_id);
          const p = document.createElement("p");
          p.id = "gold-feedback";
          p.className = "notice " + (last.gold.matched ? "gold-ok" : "gold-miss");
          p.setAttribute("role", "status");
          p.textContent = last.gold.matched
            ? "Check item: your last answer matched the expected one (" + last.gold.expected + ")."
            : "Check item: your last answer (" + last.summary + ") did not match the expected one: " + last.gold.expected + ".";
          const section = document.querySelector("section.task");
          section.insertBefore(p, section.querySelector("h1").nextSibling);
        })
        .catch(() => {});
    }
  }

  // ---- my recent labels: digits open the n-th "Change" link ----
  const mineTable = document.getElementById("mine");
  if (mineTable) {
    document.addEventListener("keydown", (e) => {
      if (typing() || e.ctrlKey || e.metaKey || e.altKey) return;
      const rows = Array.from(mineTable.querySelectorAll("tbody tr"));
      const n = e.key === "0" ? 10 : Number(e.key);
      const link = n >= 1 && rows[n - 1] && rows[n - 1].querySelector("a.edit");
      if (link) { e.preventDefault(); window.location.href = link.href; }
      if (e.key === "Escape") { const b = document.getElementById("back-to-label"); if (b) window.location.href = b.href; }
    });
  }

  // ---- the review queue ----
  const queue = document.getElementById("review-queue");
  if (queue) {
    const project = queue.dataset.project;
    document.querySelectorAll(".review-item").forEach((el) => {
      const result = el.querySelector(".result");
      const act = async (action, body) => {
        result.textContent = "Saving…";
        const err = await post("/api/projects/" + encodeURIComponent(project) + "/submissions/" +
          encodeURIComponent(el.dataset.submission) + "/" + action, body);
        if (err) { result.textContent = "Not saved: " + err; return; }
        window.location.reload();
      };
      const accept = el.querySelector("button.accept");
      if (accept) accept.addEventListener("click", () => act("accept", {}));
      const reject = el.querySelector("button.reject");
      if (reject) {
        reject.addEventListener("click", () => {
          const reason = el.querySelector("input.reason").value.trim();
          if (!reason) { result.textContent = "Give a reason to reject."; el.querySelector("input.reason").focus(); return; }
          act("reject", { reason: reason });
        });
        el.querySelector("input.reason").addEventListener("keydown", (e) => {
          if (e.key === "Enter") { e.preventDefault(); reject.click(); }
        });
      }
    });
    document.querySelectorAll(".adjudicate-item").forEach((el) => {
      const result = el.querySelector(".result");
      el.querySelectorAll("button.pick").forEach((b) => {
        b.addEventListener("click", async () => {
          result.textContent = "Saving…";
          const err = await post("/api/projects/" + encodeURIComponent(project) + "/items/" +
            encodeURIComponent(el.dataset.item) + "/adjudicate", { answers: JSON.parse(b.dataset.answers) });
          if (err) { result.textContent = "Not saved: " + err; return; }
          window.location.reload();
        });
      });
    });
  }
})();
