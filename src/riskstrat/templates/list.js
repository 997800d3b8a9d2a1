// Sort by a column: each heading holds a button (mouse, or Tab then Enter or Space). Numbers sort by
// their data-v value, text alphabetically. The sorted heading carries aria-sort (screen readers say
// it); a first sort goes the heading's data-first way (Risk and the counts: highest first), a second
// reverses it.
document.querySelectorAll("table.people thead tr.cols th").forEach(function (th, i) {
  th.querySelector("button").addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], now = th.getAttribute("aria-sort");
    var dir = now === "ascending" ? "descending" : now === "descending" ? "ascending"
      : (th.dataset.first || "ascending");
    th.parentNode.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var asc = dir === "ascending";
    function key(td) { return td.dataset.v !== undefined ? parseFloat(td.dataset.v) : td.textContent.trim().toLowerCase(); }
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a.cells[i]), y = key(b.cells[i]);
      var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
      // equal values keep the list's order (rank), whichever way the column goes
      return (asc ? c : -c) || (parseFloat(a.cells[0].dataset.v) - parseFloat(b.cells[0].dataset.v));
    }).forEach(function (r) { body.appendChild(r); });
  });
});
