// Refresh the live parts of a console page: every element with data-refresh is replaced by
// the server-rendered fragment at that URL every two seconds (same origin, same session).
"use strict";
(function () {
  const PERIOD_MS = 2000;
  function refresh(el) {
    if (el.contains(document.activeElement) && document.activeElement.tagName === "TEXTAREA") {
      return;
    }
    fetch(el.dataset.refresh, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (resp) { return resp.ok && !resp.redirected ? resp.text() : null; })
      .then(function (html) { if (html !== null) { el.innerHTML = html; } })
      .catch(function () { /* the next round tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      setInterval(function () { refresh(el); }, PERIOD_MS);
    });
  });
})();
