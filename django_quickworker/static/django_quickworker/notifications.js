/*
 * django-quickworker live messages, for the browser. No dependencies.
 *
 *   const socket = QuickWorker.connect({
 *     url: "/ws/quickworker/",                  // NotificationConsumer's route (default)
 *     on: {"job.progress": (data) => ..., "job.finished": (data) => ...},
 *     onMessage: (message) => ...,              // every {type, data}, after `on`
 *     onStatus: (status) => ...,                // "open", "closed", "refused"
 *   });
 *   socket.close();
 *
 * The socket reconnects with a growing, jittered delay (0.5 s up to 30 s) until closed;
 * when the server refuses it (not signed in: close code 4401) it stops trying.
 */
(function (global) {
  "use strict";

  var UNAUTHENTICATED = 4401;
  var FIRST_DELAY = 500;
  var MAX_DELAY = 30000;

  function absoluteUrl(path) {
    if (/^wss?:\/\//.test(path)) return path;
    var scheme = global.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + global.location.host + path;
  }

  function connect(options) {
    var url = absoluteUrl(options.url || "/ws/quickworker/");
    var handlers = options.on || {};
    var delay = FIRST_DELAY;
    var closedByUs = false;
    var socket = null;
    var timer = null;

    function status(value) {
      if (options.onStatus) options.onStatus(value);
    }

    function dispatch(event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return; // not ours
      }
      if (handlers[message.type]) handlers[message.type](message.data, message);
      if (options.onMessage) options.onMessage(message);
    }

    function open() {
      socket = new WebSocket(url);
      socket.onopen = function () {
        delay = FIRST_DELAY;
        status("open");
      };
      socket.onmessage = dispatch;
      socket.onclose = function (event) {
        if (closedByUs) return status("closed");
        if (event.code === UNAUTHENTICATED) return status("refused");
        status("closed");
        timer = setTimeout(open, delay * (0.5 + Math.random() / 2));
        delay = Math.min(delay * 2, MAX_DELAY);
      };
    }

    open();
    return {
      close: function () {
        closedByUs = true;
        clearTimeout(timer);
        if (socket) socket.close();
      },
    };
  }

  global.QuickWorker = { connect: connect };
})(window);
