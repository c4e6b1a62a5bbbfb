"""The admin: watch the queue and steer it.

Job rows are read-only here: every change goes through the lifecycle's own paths — the add
form calls ``submit_job``; the actions call WorkerJob's queryset methods (``run_now``,
``retry``, ``request_cancel``) — so the admin can never put a row in a state the workers do
not expect. Nothing here counts, sorts or SELECT DISTINCTs a whole table of a million rows
on a page view: filters offer fixed choices, counts stop early (``status.count_rows``) and
the date hierarchy reads one MIN per period it offers; each of these queries is served by
one of WorkerJob's indexes (status, due, tag, type, queue).

One module per concern: ``filters``, ``changelist`` (paginator and date hierarchy),
``display`` (HTML of a job's values), ``summary`` (the panel above the list), ``forms``
(the add form), ``actions``, ``live`` (the JSON that redraws unfinished jobs in place), and
one ModelAdmin per model, registered on import.
"""

from django_quickworker.admin.job_admin import WorkerJobAdmin
from django_quickworker.admin.process_admin import WorkerProcessAdmin

__all__ = ["WorkerJobAdmin", "WorkerProcessAdmin"]
