"""The job list's machinery: a paginator that stops counting, and a date hierarchy that never
runs Django's SELECT DISTINCT over every matching row."""

from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import Min
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from django_quickworker.overview import RowCount, count_rows
from django_quickworker.schedule import wall_time

MAX_PERIODS = 40  # years, months or days one level of the date hierarchy offers


class BoundedPaginator(Paginator):
    """Counts at most ``status.COUNT_LIMIT`` rows, then estimates (PostgreSQL) or says
    "more than": a COUNT(*) over a million-row queue on every page view costs more than
    the page itself. Past the count, the list is reached by sorting or filtering."""

    @cached_property
    def row_count(self) -> RowCount:
        return count_rows(self.object_list)  # type: ignore[arg-type]

    @cached_property
    def count(self) -> int:
        return self.row_count.value


class WorkerJobChangeList(ChangeList):
    def get_ordering_field(self, field_name: Any) -> Any:
        """Sort only by the columns an index serves, even when the URL asks for another."""
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    @cached_property
    def date_drilldown(self) -> dict[str, Any]:
        """Django's date hierarchy without its SELECT DISTINCT over every matching row.

        The years, months or days offered are found by a loose index scan: one MIN(due)
        per period that holds a job, each answered at once by an index on ``due``. They
        hold jobs, though with other filters on, maybe none that match.
        """
        name = self.date_hierarchy
        chosen = [self.params.get(f"{name}__{part}") for part in ("year", "month", "day")]
        year, month, day = (int(value) if value else None for value in chosen)

        def link(**parts: int) -> str:
            filters = {f"{name}__{part}": value for part, value in parts.items()}
            return str(self.get_query_string(filters, [f"{name}__"]))

        if year and month and day:
            moment = date(year, month, day)
            back = {
                "link": link(year=year, month=month),
                "title": capfirst(formats.date_format(moment, "YEAR_MONTH_FORMAT")),
            }
            title = capfirst(formats.date_format(moment, "MONTH_DAY_FORMAT"))
            return {"show": True, "back": back, "choices": [{"title": title}]}
        drill = year is None  # like Django, step down by itself while one choice is left
        if year is None:
            years = self._periods("year")
            if len(years) != 1:
                choices = [{"link": link(year=y.year), "title": str(y.year)} for y in years]
                return {"show": True, "back": None, "choices": choices}
            year = years[0].year
        if month is None:
            months = self._periods("month", date(year, 1, 1), date(year + 1, 1, 1))
            if len(months) != 1 or not drill:
                back = {"link": link(), "title": str(_("All dates"))}
                choices = [
                    {
                        "link": link(year=year, month=m.month),
                        "title": capfirst(formats.date_format(m, "YEAR_MONTH_FORMAT")),
                    }
                    for m in months
                ]
                return {"show": True, "back": back, "choices": choices}
            month = months[0].month
        end = date(year + month // 12, month % 12 + 1, 1)
        days = self._periods("day", date(year, month, 1), end)
        choices = [
            {
                "link": link(year=year, month=month, day=d.day),
                "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT")),
            }
            for d in days
        ]
        return {
            "show": True,
            "back": {"link": link(year=year), "title": str(year)},
            "choices": choices,
        }

    def _periods(self, unit: str, start: date | None = None, end: date | None = None) -> list[date]:
        """The first day of each year, month or day from ``start`` to ``end`` holding a job."""
        found: list[date] = []
        jobs = self.root_queryset.order_by()
        if end is not None:
            jobs = jobs.filter(**{f"{self.date_hierarchy}__lt": _local_midnight(end)})
        while len(found) < MAX_PERIODS:
            rows = jobs
            if start is not None:
                rows = rows.filter(**{f"{self.date_hierarchy}__gte": _local_midnight(start)})
            first = rows.aggregate(first=Min(self.date_hierarchy))["first"]
            if first is None:
                break
            day = wall_time(first).date()
            period = {"year": day.replace(month=1, day=1), "month": day.replace(day=1)}
            found.append(period.get(unit, day))
            start = _following(found[-1], unit)
        return found


def _local_midnight(day: date) -> datetime:
    midnight = datetime(day.year, day.month, day.day)
    return timezone.make_aware(midnight) if settings.USE_TZ else midnight


def _following(period: date, unit: str) -> date:
    if unit == "year":
        return date(period.year + 1, 1, 1)
    if unit == "month":
        return date(period.year + period.month // 12, period.month % 12 + 1, 1)
    return period + timedelta(days=1)
