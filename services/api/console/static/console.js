// The console works without this file; it adds select-all, confirmations, the form's live preview and
// showing only the timing fields of the chosen schedule type.
"use strict";

document.addEventListener("change", (event) => {
  const box = event.target;
  if (box instanceof HTMLInputElement && box.dataset.selectAll) {
    const form = box.closest("form");
    form.querySelectorAll(`input[type=checkbox][name="${box.dataset.selectAll}"]`).forEach((other) => {
      other.checked = box.checked;
    });
  }
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

const TYPE_FIELDS = { cron: "f-cron_expr", interval: "f-interval_seconds", oneoff: "f-run_at" };

function showTypeFields(form) {
  const type = form.querySelector("#f-type");
  if (!type) return;
  for (const [kind, id] of Object.entries(TYPE_FIELDS)) {
    const input = form.querySelector(`#${id}`);
    if (input) input.closest(".field").hidden = kind !== type.value;
  }
}

function livePreview(form) {
  const target = document.getElementById(form.dataset.previewTarget);
  let timer = null;
  let sent = 0;
  const refresh = async () => {
    const mine = ++sent;
    try {
      const response = await fetch(form.dataset.preview, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-Requested-With": "fetch" },
        credentials: "same-origin",
      });
      // An older answer arriving after a newer one must not replace it.
      if (mine === sent) target.innerHTML = await response.text();
    } catch (error) {
      if (mine === sent) target.textContent = "The preview is not available right now.";
    }
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  };
  form.addEventListener("input", schedule);
  form.addEventListener("change", () => {
    showTypeFields(form);
    schedule();
  });
  showTypeFields(form);
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-preview]").forEach(livePreview);
});
