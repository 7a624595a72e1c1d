// The dashboard's only script (the Content-Security-Policy allows no inline script): behaviour is declared on
// elements with data- attributes.
"use strict";

// <input type="checkbox" data-select-all="ids">: checks or clears every checkbox named "ids"
for (const box of document.querySelectorAll("input[data-select-all]")) {
  box.addEventListener("click", () => {
    for (const other of document.querySelectorAll(`input[name="${box.dataset.selectAll}"]`)) {
      other.checked = box.checked;
    }
  });
}

// <div id="overview" data-refresh="/?partial=1">: replaced by a fresh copy every 5 s
const overview = document.getElementById("overview");
if (overview && overview.dataset.refresh) {
  const source = overview.dataset.refresh;
  setInterval(async () => {
    const response = await fetch(source, {credentials: "same-origin"});
    if (response.ok) document.getElementById("overview").outerHTML = await response.text();
  }, 5000);
}
