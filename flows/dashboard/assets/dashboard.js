// Million-IRD dashboard: sortable tables and the rejected-examples filter. Inlined; no network.
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    var raw = cell.getAttribute("data-v");
    if (raw === null) raw = cell.textContent.trim();
    var num = parseFloat(raw.replace(/,/g, ""));
    return isNaN(num) || !/^[-+0-9.,eE%]+$/.test(raw) ? raw.toLowerCase() : num;
  }

  function makeSortable(table) {
    var headers = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headers, function (th, index) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var asc = !th.classList.contains("sorted-asc");
        Array.prototype.forEach.call(headers, function (h) {
          h.classList.remove("sorted-asc", "sorted-desc");
        });
        th.classList.add(asc ? "sorted-asc" : "sorted-desc");
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          if (x === y) return 0;
          return (x < y ? -1 : 1) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  function setupRejectFilter() {
    var select = document.getElementById("reject-filter");
    var grid = document.getElementById("rejected-grid");
    if (!select || !grid) return;
    select.addEventListener("change", function () {
      var wanted = select.value;
      // reason groups and their figures both carry data-reason
      Array.prototype.forEach.call(grid.querySelectorAll("[data-reason]"), function (el) {
        el.hidden = wanted !== "" && el.getAttribute("data-reason") !== wanted;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
    setupRejectFilter();
    document.documentElement.setAttribute("data-ready", "1");
  });
})();
