// Keeps "My submissions" up to date without a reload: asks the service for the caller's
// submissions every few seconds while any is queued or running, and writes text only.
(function () {
  "use strict";
  var rows = document.querySelectorAll("tr[data-submission]");
  function waiting() {
    return Array.prototype.some.call(document.querySelectorAll("td.status"), function (td) {
      return /^(queued|running)/.test(td.textContent);
    });
  }
  function update(list) {
    list.forEach(function (s) {
      var row = document.querySelector('tr[data-submission="' + CSS.escape(s.id) + '"]');
      if (!row) { return; }
      var status = s.status + (s.position ? " (position " + s.position + ")" : "");
      row.querySelector("td.status").textContent = status;
      var score = row.querySelector("td.points");
      score.textContent = s.score === null ? "" : s.score + " / " + s.max_score;
      var link = row.querySelector("td.link");
      if (s.feedback_url && !link.querySelector("a")) {
        var a = document.createElement("a");
        a.href = new URL(s.feedback_url, location.href).pathname;
        a.textContent = "feedback";
        link.appendChild(a);
      }
    });
  }
  function poll() {
    if (!rows.length || !waiting()) { return; }
    fetch("/api/submissions", {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(update)
      .catch(function () {})
      .then(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 1000);
}());
