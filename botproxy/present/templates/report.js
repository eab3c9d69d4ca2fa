(function () {
  "use strict";
  // The only script of a botproxy report; the page's CSP allows it by its hash and nothing else.
  var body = document.body;
  var filter = document.getElementById("only-flagged");
  function applyFilter() { body.classList.toggle("only-flagged", filter.checked); }
  if (filter) { filter.addEventListener("change", applyFilter); applyFilter(); }
  var buttons = document.querySelectorAll("button[data-expand]");
  Array.prototype.forEach.call(buttons, function (button) {
    button.addEventListener("click", function () {
      var open = button.getAttribute("data-expand") === "1";
      Array.prototype.forEach.call(document.querySelectorAll("details.conversation, details.turn"), function (d) {
        d.open = open;
      });
    });
  });
  // A link to an activity (#a12) opens the collapsed turn and conversation around it.
  function reveal() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id ? document.getElementById(id) : null;
    for (var node = target; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") { node.open = true; }
    }
    if (target) { target.scrollIntoView(); }
  }
  window.addEventListener("hashchange", reveal);
  reveal();
  document.documentElement.setAttribute("data-ready", "1");
})();
