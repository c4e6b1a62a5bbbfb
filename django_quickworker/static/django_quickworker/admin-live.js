/* django-quickworker's admin: redraw the jobs on the page that have not finished yet.
 *
 * Each job's status cell carries data-qw-job and data-qw-status. While any job on the page
 * is scheduled or running (a scheduled one may start at any moment), this asks the admin's
 * JSON endpoint (#qw-live's data-url) every few seconds for their cells, and swaps them in:
 * the list's rows (td.field-<name>) and the job page's fields (.field-<name> .readonly).
 * On a job's page a change of status reloads the page, since most of its fields change.
 * It pauses while the tab is hidden and slows down while the endpoint fails.
 */
(function () {
  "use strict";
  var INTERVAL = 3000; // ms between polls
  var MAX_INTERVAL = 30000; // ms, after repeated failures
  var UNFINISHED = ["scheduled", "running"];

  function watched() {
    var jobs = {};
    document.querySelectorAll("[data-qw-job]").forEach(function (marker) {
      jobs[marker.dataset.qwJob] = marker;
    });
    return jobs;
  }

  function unfinished(jobs) {
    return Object.keys(jobs).filter(function (id) {
      return UNFINISHED.indexOf(jobs[id].dataset.qwStatus) !== -1;
    });
  }

  function redraw(job, jobs, onJobPage) {
    var marker = jobs[String(job.id)];
    if (!marker) return;
    if (onJobPage && job.status !== marker.dataset.qwStatus) {
      window.location.reload();
      return;
    }
    var row = marker.closest("tr"); // found before the marker's own cell is replaced
    Object.keys(job.cells).forEach(function (name) {
      var cell = row
        ? row.querySelector("td.field-" + name)
        : document.querySelector(".field-" + name + " .readonly");
      if (cell) cell.innerHTML = job.cells[name];
    });
  }

  function start(endpoint) {
    var onJobPage = !document.getElementById("result_list");
    var delay = INTERVAL;

    function later() {
      window.setTimeout(poll, delay);
    }

    function poll() {
      var jobs = watched();
      var ids = unfinished(jobs);
      if (!ids.length) return; // everything shown has finished: nothing left to redraw
      if (document.hidden) {
        document.addEventListener("visibilitychange", poll, { once: true });
        return;
      }
      var query = ids.map(function (id) { return "id=" + encodeURIComponent(id); }).join("&");
      fetch(endpoint + "?" + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (body) {
          delay = INTERVAL;
          body.jobs.forEach(function (job) { redraw(job, jobs, onJobPage); });
        })
        .catch(function () {
          delay = Math.min(delay * 2, MAX_INTERVAL);
        })
        .then(later);
    }

    later();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("qw-live");
    if (live) start(live.dataset.url);
  });
})();
