// The run page's log: htmx appends the new lines (views.run_live); this keeps the newest in
// view unless the reader has scrolled up, who then gets "Latest lines" to jump back.
(function () {
  "use strict";
  var log = document.getElementById("run-log");
  var jump = document.getElementById("run-log-jump");
  if (!log || !jump) return;
  var follow = true;
  function toLatest() { log.scrollTop = log.scrollHeight; jump.hidden = true; }
  log.addEventListener("scroll", function () {
    follow = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    if (follow) jump.hidden = true;
  });
  jump.addEventListener("click", toLatest);
  new MutationObserver(function () {
    if (follow) toLatest();
    else jump.hidden = false;
  }).observe(log, { childList: true });
  toLatest();
})();
