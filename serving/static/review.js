// Review page: keyboard shortcuts for the queue and the letter form; saving goes through
// POST /v1/letters/{id}/review (the page's cookie carries the supervisor key).
(function () {
  "use strict";
  const typing = (el) => el && ["INPUT", "TEXTAREA"].includes(el.tagName) && el.type !== "checkbox";

  // --- queue: j/k move, Enter opens; dates become time-zone aware filter values
  const queue = document.getElementById("queue");
  if (queue) {
    const rows = Array.from(queue.querySelectorAll("tbody tr[data-href]"));
    let at = 0;
    const select = (i) => {
      if (!rows.length) return;
      rows[at].classList.remove("selected");
      at = Math.max(0, Math.min(rows.length - 1, i));
      rows[at].classList.add("selected");
      rows[at].scrollIntoView({ block: "nearest" });
    };
    rows.forEach((row, i) => row.addEventListener("click", () => { window.location = row.dataset.href; }));
    document.addEventListener("keydown", (event) => {
      if (typing(document.activeElement) || document.activeElement.tagName === "SELECT") return;
      if (event.key === "j") select(at + 1);
      else if (event.key === "k") select(at - 1);
      else if (event.key === "Enter" && rows.length) window.location = rows[at].dataset.href;
    });
    const filters = document.getElementById("filters");
    filters.addEventListener("submit", () => {
      const from = document.getElementById("from-date").value;
      const to = document.getElementById("to-date").value;
      filters.elements.received_from.value = from ? from + "T00:00:00+08:00" : "";
      filters.elements.received_to.value = to ? to + "T23:59:59+08:00" : "";
      Array.from(filters.elements).forEach((el) => { if (el.name && !el.value) el.disabled = true; });
    });
  }

  // --- letter: the review form
  const form = document.getElementById("review-form");
  if (!form) return;
  const status = document.getElementById("status");

  const labels = () => {
    const out = {};
    form.querySelectorAll("[data-head]").forEach((el) => {
      const head = el.dataset.head;
      if (el.dataset.type === "single") out[head] = el.value;
      else if (el.dataset.type === "binary") out[head] = el.checked;
      else {
        out[head] = out[head] || [];
        if (el.checked) out[head].push(el.value);
      }
    });
    return out;
  };

  const save = async (confirmOnly) => {
    status.textContent = "保存中…";
    const body = { labels: labels(), comment: document.getElementById("comment").value || null };
    if (confirmOnly && !body.comment) body.comment = null;
    const response = await fetch(`/v1/letters/${form.dataset.letter}/review`, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) {
      const detail = await response.json().catch(() => ({}));
      status.textContent = "保存失败：" + (typeof detail.detail === "string" ? detail.detail : response.status);
      return;
    }
    status.textContent = "已保存";
    window.location = form.dataset.next ? `/review/letters/${form.dataset.next}` : window.location.href;
  };

  form.addEventListener("submit", (event) => { event.preventDefault(); save(false); });
  document.getElementById("confirm").addEventListener("click", () => save(true));

  document.addEventListener("keydown", (event) => {
    const active = document.activeElement;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); save(false); return; }
    if (event.key === "Escape") { active.blur(); return; }
    if (active && active.tagName === "SELECT") {
      if (event.key === "Enter") { event.preventDefault(); save(false); }
      return;
    }
    if (typing(active)) return;
    if (event.key === "s") {
      const single = form.querySelector("select[data-type=single]");
      if (single) { event.preventDefault(); single.focus(); }
    } else if (event.key === "c") { save(true); }
    else if (event.key === "r") {
      const binary = form.querySelector("input[data-type=binary]");
      if (binary) binary.checked = !binary.checked;
    } else if (event.key === "n" && form.dataset.next) { window.location = `/review/letters/${form.dataset.next}`; }
    else if (/^[1-9]$/.test(event.key)) {
      const box = form.querySelector(`input[data-type=multi][data-key="${event.key}"]`);
      if (box) box.checked = !box.checked;
    }
  });
})();
