/*
 * Syntera chat widget: plain JavaScript, no build step, nothing fetched but the API.
 *
 *   <script src="https://api.example.com/widget.js" data-key="pub_key_…"></script>
 *
 * A chat bubble that starts a conversation with the key's agent, sends the visitor's
 * messages, and shows the agent's replies and typing live through the chat's event
 * stream (Server-Sent Events), resuming after a dropped connection from the last event
 * it saw. The chat survives a page reload (its session is kept in sessionStorage).
 * Everything shown is set as text, never as HTML.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) return;
  var key = script.getAttribute("data-key");
  var api = new URL(script.src, window.location.href).origin;
  var title = script.getAttribute("data-title") || "Chat with us";
  var storageKey = "syntera-chat:" + key;
  // An ended chat the visitor has not rated yet: asked again after a reload.
  var ratingKey = storageKey + ":unrated";

  var state = {
    conversationId: null,
    session: null,
    lastEventId: null,
    source: null,
    seen: {},
    growing: {},
    typingTimer: null,
    typingSent: 0,
    ended: false,
    starting: null,
    unrated: null, // {id, session} of the ended chat the rating form is for
  };

  // ---- the page elements, in a shadow root so the site's styles do not reach them ----
  var host = document.createElement("div");
  host.setAttribute("data-syntera-widget", "");
  document.body.appendChild(host);
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  var style = document.createElement("style");
  style.textContent = [
    ":host{all:initial}",
    ".bubble{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;",
    "border:0;background:#2563eb;color:#fff;font:600 22px system-ui,sans-serif;cursor:pointer;",
    "box-shadow:0 4px 12px rgba(0,0,0,.25);z-index:2147483000}",
    ".bubble:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}",
    ".panel{position:fixed;right:20px;bottom:88px;width:min(360px,calc(100vw - 40px));",
    "height:min(480px,calc(100vh - 120px));display:none;flex-direction:column;background:#fff;",
    "border-radius:12px;box-shadow:0 8px 24px rgba(0,0,0,.25);font:14px system-ui,sans-serif;",
    "color:#111;z-index:2147483000;overflow:hidden}",
    ".panel.open{display:flex}",
    "header{background:#2563eb;color:#fff;padding:12px 16px;font-weight:600}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px}",
    ".msg{max-width:80%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;",
    "word-wrap:break-word}",
    ".user{align-self:flex-end;background:#2563eb;color:#fff}",
    ".agent,.system{align-self:flex-start;background:#f1f5f9}",
    ".sources{font-size:12px;color:#475569;margin-top:4px}",
    ".status{font-size:12px;color:#475569;padding:0 12px 4px;min-height:16px}",
    "form{display:flex;border-top:1px solid #e2e8f0}",
    "input{flex:1;border:0;padding:12px;font:inherit}",
    "input:focus{outline:2px solid #2563eb;outline-offset:-2px}",
    "button.send{border:0;background:none;color:#2563eb;font:600 14px system-ui;padding:0 16px;",
    "cursor:pointer}",
    ".rating{display:none;flex-direction:column;gap:8px;padding:12px;border-top:1px solid #e2e8f0}",
    ".rating.open{display:flex}",
    ".rating fieldset{border:0;margin:0;padding:0;display:flex;gap:4px;align-items:center}",
    ".rating legend{font-weight:600;margin-bottom:6px;padding:0}",
    ".rating label{cursor:pointer;font-size:22px;color:#94a3b8;line-height:1}",
    ".rating label.on{color:#f59e0b}",
    ".rating input[type=radio]{position:absolute;opacity:0;width:1px;height:1px}",
    ".rating input[type=radio]:focus-visible+span{outline:2px solid #2563eb;outline-offset:2px}",
    ".rating textarea{font:inherit;border:1px solid #cbd5e1;border-radius:6px;padding:6px;resize:vertical}",
    ".rating button{align-self:flex-start;border:0;border-radius:6px;background:#2563eb;color:#fff;",
    "font:600 14px system-ui;padding:6px 14px;cursor:pointer}",
    ".rating button:disabled{opacity:.6}",
  ].join("");
  root.appendChild(style);

  var bubble = element("button", "bubble", "💬");
  bubble.setAttribute("aria-label", title);
  bubble.setAttribute("aria-expanded", "false");
  var panel = element("section", "panel");
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", title);
  var header = element("header", "", title);
  var log = element("div", "log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  var status = element("div", "status");
  status.setAttribute("aria-live", "polite");
  var form = element("form");
  var input = element("input");
  input.setAttribute("aria-label", "Your message");
  input.setAttribute("placeholder", "Type a message…");
  input.setAttribute("maxlength", "4000");
  var send = element("button", "send", "Send");
  send.setAttribute("type", "submit");
  form.appendChild(input);
  form.appendChild(send);
  // When the chat ends: a rating of 1 to 5 and a comment.
  var rating = element("form", "rating");
  var scale = element("fieldset");
  scale.appendChild(element("legend", "", "How was this chat?"));
  var stars = [];
  for (var score = 1; score <= 5; score += 1) {
    var choice = element("label");
    var radio = element("input");
    radio.type = "radio";
    radio.name = "score";
    radio.value = String(score);
    radio.setAttribute("aria-label", score + " out of 5");
    choice.appendChild(radio);
    choice.appendChild(element("span", "", "★"));
    stars.push(choice);
    scale.appendChild(choice);
  }
  var comment = element("textarea");
  comment.setAttribute("aria-label", "Comment (optional)");
  comment.setAttribute("placeholder", "Anything to add? (optional)");
  comment.setAttribute("maxlength", "2000");
  comment.setAttribute("rows", "2");
  var rate = element("button", "", "Send rating");
  rate.setAttribute("type", "submit");
  rating.appendChild(scale);
  rating.appendChild(comment);
  rating.appendChild(rate);
  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(status);
  panel.appendChild(form);
  panel.appendChild(rating);
  root.appendChild(panel);
  root.appendChild(bubble);

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function say(text) {
    status.textContent = text || "";
  }

  // ---- the API ----
  function call(method, path, body, session) {
    var headers = { "X-Api-Key": key };
    if (session || state.session) headers["X-Widget-Session"] = session || state.session;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(api + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (response) {
      if (response.status === 204) return null;
      return response.json().then(function (answer) {
        if (!response.ok) {
          var error = new Error(answer.detail || answer.title || "HTTP " + response.status);
          error.status = response.status;
          throw error;
        }
        return answer;
      });
    });
  }

  function chatPath(suffix) {
    return "/v1/public/conversations/" + state.conversationId + suffix;
  }

  function save() {
    try {
      sessionStorage.setItem(
        storageKey,
        JSON.stringify({ id: state.conversationId, session: state.session })
      );
    } catch (ignored) {}
  }

  function restore() {
    try {
      var kept = JSON.parse(sessionStorage.getItem(storageKey) || "null");
      if (kept && kept.id && kept.session) {
        state.conversationId = kept.id;
        state.session = kept.session;
        return true;
      }
    } catch (ignored) {}
    return false;
  }

  function startChat() {
    say("Connecting…");
    return call("POST", "/v1/public/conversations").then(function (started) {
      state.conversationId = started.conversation.id;
      state.session = started.session_token;
      save();
    });
  }

  function loadHistory() {
    return call("GET", chatPath("/messages?limit=100")).then(function (page) {
      page.data.forEach(show);
    });
  }

  function show(message) {
    if (state.seen[message.id]) return;
    state.seen[message.id] = true;
    var kind = message.sender_type === "user" ? "user" : message.sender_type;
    var growing = state.growing[message.id];
    if (growing) {
      // The answer streamed in: the stored reply replaces what the pieces made.
      growing.textContent = message.content;
      growing.removeAttribute("data-growing");
      delete state.growing[message.id];
      showSources(growing, message);
      return;
    }
    var node = element("div", "msg " + kind, message.content);
    node.setAttribute("data-message-id", message.id);
    showSources(node, message);
    log.appendChild(node);
    log.scrollTop = log.scrollHeight;
  }

  // The documents an agent's answer came from (metadata.citations), named under it.
  function showSources(node, message) {
    var cited = (message.metadata && message.metadata.citations) || [];
    var names = [];
    cited.forEach(function (citation) {
      if (citation.document_name && names.indexOf(citation.document_name) < 0) {
        names.push(citation.document_name);
      }
    });
    if (!names.length) return;
    node.appendChild(element("div", "sources", "Sources: " + names.join(", ")));
  }

  // A piece of the agent's answer, as it is written (the stored reply follows).
  function grow(delta) {
    if (state.seen[delta.message_id]) return;
    var node = state.growing[delta.message_id];
    if (!node) {
      node = element("div", "msg agent", "");
      node.setAttribute("data-message-id", delta.message_id);
      node.setAttribute("data-growing", "true");
      state.growing[delta.message_id] = node;
      log.appendChild(node);
    }
    node.textContent += delta.delta;
    log.scrollTop = log.scrollHeight;
  }

  // ---- live events ----
  function listen() {
    if (state.source) state.source.close();
    var query =
      "?key=" + encodeURIComponent(key) + "&session=" + encodeURIComponent(state.session);
    if (state.lastEventId) query += "&last_event_id=" + encodeURIComponent(state.lastEventId);
    var source = new EventSource(api + chatPath("/events") + query);
    state.source = source;
    function track(event) {
      if (event.lastEventId) state.lastEventId = event.lastEventId;
      return JSON.parse(event.data);
    }
    source.addEventListener("open", function () {
      panel.setAttribute("data-live", "true"); // live events reach this chat from now on
      if (!state.ended) say("");
    });
    source.addEventListener("message.created", function (event) {
      var envelope = track(event);
      show(envelope.data);
      if (envelope.data.sender_type !== "user") say("");
    });
    source.addEventListener("message.delta", function (event) {
      grow(JSON.parse(event.data).data); // ephemeral: no id to resume from
    });
    source.addEventListener("typing", function (event) {
      var envelope = track(event);
      if (envelope.data.by === "visitor") return;
      say(envelope.data.state === "start" ? "Typing…" : "");
      clearTimeout(state.typingTimer);
      if (envelope.data.state === "start") {
        state.typingTimer = setTimeout(function () { say(""); }, 8000);
      }
    });
    source.addEventListener("conversation.ended", function (event) {
      track(event);
      endToRate();
    });
    source.addEventListener("conversation.archived", function (event) {
      track(event);
      endToRate();
    });
    source.addEventListener("reset", function () {
      // Missed events are no longer kept: catch up through the REST API.
      loadHistory();
    });
    source.addEventListener("end", function () {
      source.close();
      end("This chat is no longer available.");
    });
    source.addEventListener("error", function () {
      panel.setAttribute("data-live", "false");
      if (source.readyState === EventSource.CLOSED && !state.ended) {
        // The browser gives up on a refused stream (503, 429): try again, from where we were.
        say("Reconnecting…");
        setTimeout(listen, 3000);
      } else if (!state.ended) {
        say("Reconnecting…");
      }
    });
  }

  function end(text) {
    state.ended = true;
    if (state.source) state.source.close();
    input.disabled = true;
    send.disabled = true;
    say(text);
    try {
      sessionStorage.removeItem(storageKey);
    } catch (ignored) {}
  }

  // ---- the rating, once the chat has ended ----
  function chosenScore() {
    for (var i = 0; i < stars.length; i += 1) {
      if (stars[i].firstChild.checked) return i + 1;
    }
    return 0;
  }

  // The chat ended: ask for a rating, and remember the chat until it is rated, so a
  // reload asks again (the next chat starts anew beside the question).
  function endToRate() {
    var unrated = { id: state.conversationId, session: state.session };
    end("This chat has ended.");
    if (!unrated.id || !unrated.session) return;
    try {
      sessionStorage.setItem(ratingKey, JSON.stringify(unrated));
    } catch (ignored) {}
    askForRating(unrated);
  }

  function askForRating(unrated) {
    if (!unrated || rating.getAttribute("data-done")) return;
    state.unrated = unrated;
    rating.classList.add("open");
  }

  function rated() {
    state.unrated = null;
    try {
      sessionStorage.removeItem(ratingKey);
    } catch (ignored) {}
  }

  function keptUnrated() {
    try {
      var kept = JSON.parse(sessionStorage.getItem(ratingKey) || "null");
      if (kept && kept.id && kept.session) return kept;
    } catch (ignored) {}
    return null;
  }

  rating.addEventListener("change", function () {
    var score = chosenScore();
    stars.forEach(function (star, index) {
      star.classList.toggle("on", index < score);
    });
  });

  rating.addEventListener("submit", function (event) {
    event.preventDefault();
    var score = chosenScore();
    if (!score) {
      say("Choose 1 to 5 stars first.");
      stars[0].firstChild.focus();
      return;
    }
    var unrated = state.unrated;
    if (!unrated) return;
    rate.disabled = true;
    var text = comment.value.trim();
    var path = "/v1/public/conversations/" + unrated.id + "/rating";
    call("POST", path, { score: score, comment: text || null }, unrated.session)
      .then(function () {
        rated();
        rating.setAttribute("data-done", "true");
        rating.classList.remove("open");
        say("Thank you for your rating.");
      })
      .catch(function (error) {
        rate.disabled = false;
        if (error.status === 401 || error.status === 404 || error.status === 405) {
          // This server takes no ratings, or the chat is gone: leave the visitor be.
          rated();
          rating.classList.remove("open");
          say("This chat has ended.");
        } else {
          say("Rating not sent: " + error.message);
        }
      });
  });

  // ---- the visitor ----
  var opened = false;
  function open() {
    panel.classList.add("open");
    bubble.setAttribute("aria-expanded", "true");
    input.focus();
    if (opened) return;
    opened = true;
    var ready = restore()
      ? loadHistory().catch(function () {
          state.conversationId = null;
          state.session = null;
          return startChat();
        })
      : startChat();
    state.starting = ready; // what a message sent meanwhile waits for
    ready
      .then(function () {
        say("");
        listen();
        askForRating(keptUnrated());
      })
      .catch(function (error) {
        say("The chat is unavailable: " + error.message);
      });
  }

  bubble.addEventListener("click", function () {
    if (panel.classList.contains("open")) {
      panel.classList.remove("open");
      bubble.setAttribute("aria-expanded", "false");
    } else {
      open();
    }
  });

  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      panel.classList.remove("open");
      bubble.setAttribute("aria-expanded", "false");
      bubble.focus();
    }
  });

  input.addEventListener("input", function () {
    if (!state.conversationId || state.ended) return;
    var now = Date.now();
    if (now - state.typingSent > 3000) {
      state.typingSent = now;
      call("POST", chatPath("/typing"), { state: "start" }).catch(function () {});
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || state.ended) return;
    input.value = "";
    state.typingSent = 0;
    // A message sent while the chat is still starting goes once it has started (it was
    // dropped before, with its text left in the box, when the API answered slowly).
    (state.starting || Promise.resolve())
      .then(function () {
        if (!state.conversationId) throw new Error("the chat has not started");
        return call("POST", chatPath("/messages"), { content: text });
      })
      .then(show)
      .catch(function (error) {
        input.value = text;
        say("Not sent: " + error.message);
      });
  });

  window.SynteraWidget = { open: open };
})();
