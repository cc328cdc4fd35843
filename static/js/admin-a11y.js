/* The admin's autocomplete boxes (select2) are a combobox and a read-only textbox named only
   by the current value, which is empty until something is chosen: name both by the field's
   label too. select2 builds them from jQuery's ready handler, so this watches for them. */
(function () {
  "use strict";
  function prepend(node, id) {
    var current = (node.getAttribute("aria-labelledby") || "").split(" ").filter(Boolean);
    if (current.indexOf(id) < 0) { node.setAttribute("aria-labelledby", [id].concat(current).join(" ")); }
  }
  function name() {
    document.querySelectorAll("select.admin-autocomplete").forEach(function (select) {
      var label = select.id && document.querySelector("label[for='" + select.id + "']");
      var container = select.nextElementSibling;
      if (!label || !container || !container.classList.contains("select2")) { return; }
      if (!label.id) { label.id = select.id + "_label"; }
      container.querySelectorAll(".select2-selection[role=combobox], .select2-selection__rendered").forEach(function (node) {
        if (!node.id && node.classList.contains("select2-selection__rendered")) { return; }
        prepend(node, label.id);
        if (node.classList.contains("select2-selection__rendered")) { prepend(node, node.id); }
      });
    });
  }
  var scheduled = false;
  new MutationObserver(function () {
    if (scheduled) { return; }
    scheduled = true;
    window.setTimeout(function () { scheduled = false; name(); }, 0);
  }).observe(document.documentElement, { childList: true, subtree: true });
  document.addEventListener("DOMContentLoaded", name);
  window.addEventListener("load", name);
})();
