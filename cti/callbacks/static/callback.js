/* CTI click-to-callback widget: one script tag, no framework.
 *   <script src="https://cti.example/widget/callback.js" data-topic="support"
 *           data-site-key="..." data-target="#call-me" async></script>
 * Builds an accessible form (labels, keyboard, live region), checks the
 * number, asks the server, shows the expected time or the slots offered,
 * then follows the status. Style it by overriding the .cti-cb-* classes. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var base = new URL(script.src).origin;
  var topic = script.getAttribute("data-topic") || "";
  var siteKey = script.getAttribute("data-site-key") || "";
  var lang = script.getAttribute("data-lang") || (navigator.language || "").slice(0, 2);

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) { node.textContent = text; }
    return node;
  }
  function time(iso) {
    var d = new Date(iso);
    return d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  }
  function numberLooksRight(value) {
    var digits = value.replace(/[\s.\-()\/]/g, "");
    return /^\+?[0-9]{6,15}$/.test(digits);
  }

  var css = el("link", {rel: "stylesheet", href: base + "/widget/callback.css"});
  document.head.insertBefore(css, document.head.firstChild);  // host styles win

  var box = el("section", {"class": "cti-cb", "aria-labelledby": "cti-cb-title"});
  box.appendChild(el("h2", {id: "cti-cb-title", "class": "cti-cb-title"}, "Call me back"));
  var form = el("form", {"class": "cti-cb-form", novalidate: ""});
  form.appendChild(el("label", {"for": "cti-cb-number"}, "Your phone number"));
  var number = el("input", {id: "cti-cb-number", name: "number", type: "tel",
    autocomplete: "tel", required: "", maxlength: "40", "aria-describedby": "cti-cb-hint"});
  form.appendChild(number);
  form.appendChild(el("p", {id: "cti-cb-hint", "class": "cti-cb-hint"},
    "For example 06 11 22 33 44 or +33 6 11 22 33 44"));
  form.appendChild(el("label", {"for": "cti-cb-name"}, "Your name (optional)"));
  var name = el("input", {id: "cti-cb-name", name: "name", type: "text",
    autocomplete: "name", maxlength: "80"});
  form.appendChild(name);
  form.appendChild(el("label", {"for": "cti-cb-when"}, "When"));
  var when = el("select", {id: "cti-cb-when", name: "when"});
  when.appendChild(el("option", {value: "asap"}, "As soon as possible"));
  form.appendChild(when);
  var send = el("button", {type: "submit", "class": "cti-cb-send"}, "Call me back");
  form.appendChild(send);
  box.appendChild(form);
  var expected = el("p", {"class": "cti-cb-expected", "aria-live": "polite"});
  box.appendChild(expected);
  var status = el("p", {"class": "cti-cb-status", role: "status", "aria-live": "polite"});
  box.appendChild(status);

  var target = document.querySelector(script.getAttribute("data-target") || "");
  if (target) { target.appendChild(box); } else { script.parentNode.insertBefore(box, script); }

  function api(method, path, body) {
    var headers = {"Accept": "application/json"};
    if (body) { headers["Content-Type"] = "application/json"; }
    if (siteKey) { headers["X-CTI-Site-Key"] = siteKey; }
    return fetch(base + "/api/v1/callbacks" + path, {
      method: method, headers: headers, body: body ? JSON.stringify(body) : undefined,
      mode: "cors", credentials: "omit"
    }).then(function (r) {
      return r.json().then(function (j) { return {status: r.status, body: j}; });
    });
  }
  function fillSlots(slots, asap) {
    while (when.firstChild) { when.removeChild(when.firstChild); }
    if (asap) { when.appendChild(el("option", {value: "asap"}, "As soon as possible")); }
    slots.forEach(function (s) {
      when.appendChild(el("option", {value: s.start}, time(s.start) + " – " + time(s.end)));
    });
  }
  function say(text, kind) {
    status.textContent = text;
    status.className = "cti-cb-status" + (kind ? " cti-cb-" + kind : "");
  }
  function follow(id) {
    api("GET", "/" + encodeURIComponent(id)).then(function (r) {
      if (r.status !== 200) { return; }
      var s = r.body.status;
      box.setAttribute("data-status", s);
      if (s === "dialing") { say("We are calling you now.", "ok"); }
      else if (s === "completed") { say("Thank you, the call is done.", "ok"); return; }
      else if (s === "failed" || s === "cancelled") { say("The callback is " + s + ".", "error"); return; }
      setTimeout(function () { follow(id); }, 2000);
    });
  }

  var query = topic ? "?topic=" + encodeURIComponent(topic) : "";
  api("GET", "/slots" + query).then(function (r) {
    if (r.status === 200) { fillSlots(r.body.slots, r.body.asap); }
  }).catch(function () {});

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var value = number.value.trim();
    if (!numberLooksRight(value)) {
      number.setAttribute("aria-invalid", "true");
      say("Please enter a valid phone number.", "error");
      number.focus();
      return;
    }
    number.removeAttribute("aria-invalid");
    send.disabled = true;
    say("Sending…");
    var body = {number: value, when: when.value, page: location.href.slice(0, 512)};
    if (name.value.trim()) { body.name = name.value.trim(); }
    if (topic) { body.topic = topic; }
    if (/^[a-z]{2}$/.test(lang)) { body.language = lang; }
    api("POST", "", body).then(function (r) {
      send.disabled = false;
      if (r.status === 202) {
        box.setAttribute("data-callback", r.body.id);
        box.setAttribute("data-status", r.body.status);
        var at = time(r.body.expected_at);
        expected.textContent = (r.body.asap ? "We will call you back around "
                                            : "We will call you back at ") + at + ".";
        say(r.body.duplicate ? "Your earlier request stands." : "Request received.", "ok");
        form.hidden = true;
        setTimeout(function () { follow(r.body.id); }, 2000);
      } else if (r.status === 409 && r.body.slots) {
        fillSlots(r.body.slots, false);
        say("We cannot call you back soon. Please choose a time.", "error");
        when.focus();
      } else if (r.status === 422 && r.body.fields) {
        say(r.body.fields.map(function (f) { return f.field + ": " + f.reason; }).join("; "),
            "error");
      } else {
        say(r.body.message || "Something went wrong, please try again later.", "error");
      }
    }).catch(function () {
      send.disabled = false;
      say("The service cannot be reached, please try again later.", "error");
    });
  });
})();
