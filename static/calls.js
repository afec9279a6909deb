// "Heute": the call list (#call-board) polls itself every 30 seconds.
// A poll is skipped while a coordinator works on a card (one of its forms is
// unfolded, or a field in the list has focus), so nothing typed is lost;
// contact histories that were open stay open after a refresh.
(function () {
  "use strict";

  var openHistories = [];

  function busy(board) {
    if (board.querySelector("details.card-action[open]")) {
      return true;
    }
    var active = document.activeElement;
    return Boolean(
      active && board.contains(active) && active.matches("input, textarea, select")
    );
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var board = event.detail.elt;
    if (!board || board.id !== "call-board") {
      return;
    }
    if (busy(board)) {
      event.preventDefault();
      return;
    }
    openHistories = Array.prototype.map.call(
      board.querySelectorAll("details.call-history[open]"),
      function (details) {
        return details.id;
      }
    );
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (!event.target || event.target.id !== "call-board") {
      return;
    }
    openHistories.forEach(function (id) {
      var details = document.getElementById(id);
      if (details) {
        details.open = true;
      }
    });
    openHistories = [];
  });
})();
