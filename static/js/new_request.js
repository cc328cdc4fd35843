"use strict";
// Progressive enhancement: only the chosen template's typed fields are shown. Without
// JavaScript every section stays visible and works. Picking a system waits for "선택".
(function () {
  var subType = document.getElementById("id_sub_type");
  if (!subType) return;
  function show() {
    document.querySelectorAll("[data-templates]").forEach(function (el) {
      el.hidden = el.dataset.templates.split(" ").indexOf(subType.value) < 0;
    });
  }
  subType.addEventListener("change", show);
  show();
})();
