// The portal's only script of its own (the Content-Security-Policy allows no inline script):
// local times, the live regions' announcements, focus on the first form error, and the end of
// a failed job's log in view.
(function () {
  "use strict";

  var dateFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });

  // <time datetime="...Z">2026-11-28 16:51:31 UTC</time> reads in the viewer's own time zone;
  // the UTC text stays on hover.
  function localTimes(root) {
    root.querySelectorAll("time[datetime][data-local]").forEach(function (element) {
      var when = new Date(element.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      if (!element.title) element.title = element.textContent.trim();
      element.textContent = dateFormat.format(when);
    });
  }

  // A polled region carries data-announce (what changed, in words): say it once to screen
  // readers through the page's polite live region when it differs from the last one said.
  var announced = {};
  function announce(root) {
    var regions = root.matches && root.matches("[data-announce]") ? [root] : [];
    root.querySelectorAll("[data-announce]").forEach(function (element) { regions.push(element); });
    var announcer = document.getElementById("live-announcer");
    regions.forEach(function (element) {
      var text = element.getAttribute("data-announce");
      var key = element.id || "page";
      if (announced[key] === undefined) {
        announced[key] = text;  // the page as loaded: nothing to announce
      } else if (announced[key] !== text && announcer) {
        announced[key] = text;
        announcer.textContent = text;
      }
    });
  }

  // A form sent back with errors: move focus to the first field in error (its label and the
  // message are read out through aria-describedby), else to the error summary.
  function focusFirstError() {
    var field = document.querySelector("form [aria-invalid=true]");
    var summary = document.querySelector(".error-summary");
    var target = field || summary;
    if (target) target.focus();
  }

  // A failed job's last log lines end with its error: show the end of the box, not its start.
  function logTails(root) {
    root.querySelectorAll("pre.log-tail").forEach(function (element) {
      element.scrollTop = element.scrollHeight;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    logTails(document);
    announce(document);
    focusFirstError();
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var root = event.detail.elt && event.detail.elt.isConnected ? event.detail.elt : document;
    localTimes(document);
    logTails(document);
    announce(root === document ? document : document.body);
  });

  // A poll answered by the sign-in page (the session ended): stop and show it for real.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.responseURL && xhr.responseURL.indexOf("/accounts/login/") !== -1) {
      event.detail.shouldSwap = false;
      window.location.reload();
    }
  });
})();
