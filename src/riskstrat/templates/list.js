// Click a column heading to sort by it (numbers by their data-v value, text alphabetically).
document.querySelectorAll("table.people thead tr.cols th").forEach(function (th, i) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], asc = th.dataset.dir !== "asc";
    th.parentNode.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = asc ? "asc" : "desc";
    function key(td) { return td.dataset.v !== undefined ? parseFloat(td.dataset.v) : td.textContent.trim().toLowerCase(); }
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a.cells[i]), y = key(b.cells[i]);
      var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
      return asc ? c : -c;
    }).forEach(function (r) { body.appendChild(r); });
  });
});
