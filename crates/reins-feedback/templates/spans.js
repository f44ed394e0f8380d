// reins feedback: spans shown in the response text. Each piece of text between span
// boundaries that some span covers is wrapped in one <mark> naming its tags, coloured by
// the tag (the colours are shown on the tag buttons too). Only the wrapping changes: the
// <pre>'s text stays the stored text, so selection offsets, counted in code points over
// that text, mean the same before and after highlighting.
(function () {
  "use strict";
  const COLOURS = 6;

  function colour(tags, tag) {
    const i = tags.indexOf(tag);
    return "tag-" + ((i < 0 ? 0 : i) % COLOURS);
  }

  // Overlapping spans: the pieces covered by several get the colour of the one added last
  // and a double underline, and the mark names every tag on it.
  function highlight(pre, chars, list, tags) {
    const cuts = new Set([0, chars.length]);
    list.forEach((s) => { cuts.add(s.start); cuts.add(s.end); });
    const points = Array.from(cuts).sort((a, b) => a - b);
    pre.textContent = "";
    for (let k = 0; k + 1 < points.length; k++) {
      const a = points[k], b = points[k + 1];
      const piece = chars.slice(a, b).join("");
      const over = [];
      list.forEach((s, j) => { if (s.start <= a && s.end >= b) over.push(j); });
      if (!over.length) { pre.appendChild(document.createTextNode(piece)); continue; }
      const m = document.createElement("mark");
      const names = Array.from(new Set(over.map((j) => list[j].tag)));
      m.className = "span-mark " + colour(tags, list[over[over.length - 1]].tag) + (over.length > 1 ? " overlap" : "");
      m.dataset.tag = names.join(" ");
      m.dataset.spans = over.join(" ");
      m.title = names.join(", ");
      m.textContent = piece;
      pre.appendChild(m);
    }
  }

  function listing(ul, chars, list, tags, onRemove) {
    ul.textContent = "";
    list.forEach((s, j) => {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch " + colour(tags, s.tag);
      sw.setAttribute("aria-hidden", "true");
      const said = s.tag + ": “" + chars.slice(s.start, s.end).join("") + "”";
      const text = document.createElement("span");
      text.textContent = said;
      const rm = document.createElement("button");
      rm.type = "button";
      rm.className = "span-remove";
      rm.textContent = "remove";
      rm.setAttribute("aria-label", "Remove span " + said);
      rm.addEventListener("click", (e) => { e.stopPropagation(); onRemove(j); });
      li.append(sw, text, " ", rm);
      ul.appendChild(li);
    });
  }

  window.reinsSpans = {
    // `text` is the stored response, `list` its spans [{start, end, tag}] in code points.
    render: function (pre, ul, text, list, tags, onRemove) {
      const chars = Array.from(text);
      highlight(pre, chars, list, tags);
      listing(ul, chars, list, tags, onRemove);
    },
  };

  // The tag buttons show their highlight colour.
  document.querySelectorAll('.field[data-kind="spans"]').forEach((f) => {
    const tags = Array.from(f.querySelectorAll(".opt")).map((b) => b.dataset.value).filter((v) => v !== "clear");
    f.querySelectorAll(".opt").forEach((b) => {
      if (b.dataset.value === "clear") return;
      const sw = document.createElement("span");
      sw.className = "swatch " + colour(tags, b.dataset.value);
      sw.setAttribute("aria-hidden", "true");
      b.prepend(sw);
    });
  });
})();
