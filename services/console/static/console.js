// renewals console: the live event feed on the overview. Plain JavaScript,
// no library; loaded with defer from the console's own origin.
(function () {
  "use strict";
  var feed = document.getElementById("feed");
  if (!feed || !window.EventSource) { return; }
  var state = document.getElementById("feed-state");
  var zone = feed.getAttribute("data-zone") || "UTC";
  var types = (feed.getAttribute("data-types") || "").split(" ");
  var fmt;
  try {
    fmt = new Intl.DateTimeFormat("en-GB", { timeZone: zone, hour: "2-digit", minute: "2-digit", second: "2-digit" });
  } catch (e) {
    fmt = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  var max = 50;
  // The feed starts a few events back; on a reconnect EventSource sends
  // Last-Event-ID, which resumes after the last one shown.
  var from = feed.getAttribute("data-from");
  var src = new EventSource("/events" + (from ? "?from_seq=" + encodeURIComponent(from) : ""));
  src.onopen = function () {
    state.textContent = "Connected: new events appear here as they happen.";
    feed.setAttribute("data-state", "open");
  };
  src.onerror = function () {
    state.textContent = "The event stream is interrupted: reconnecting…";
    feed.setAttribute("data-state", "retrying");
  };
  function add(ev) {
    var ce;
    try { ce = JSON.parse(ev.data); } catch (e) { return; }
    var li = document.createElement("li");
    var when = document.createElement("time");
    when.dateTime = ce.time || "";
    when.textContent = ce.time ? fmt.format(new Date(ce.time)) : "";
    var what = document.createElement("strong");
    what.textContent = String(ce.type || ev.type).replace(/^renewals\./, "").replace(/\.v1$/, "");
    var subj = document.createElement("span");
    subj.className = "subject";
    subj.textContent = ce.subject || "";
    li.appendChild(when);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(what);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(subj);
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > max) { feed.removeChild(feed.lastChild); }
  }
  types.forEach(function (t) { if (t) { src.addEventListener(t, add); } });
})();
