"""The add form: a job submitted through ``submit_job``, so every rule of code applies here."""

import json
from typing import Any

from django import forms
from django.contrib.admin.widgets import AdminSplitDateTime
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_quickworker.exceptions import (
    InvalidCronSchedule,
    InvalidJobData,
    InvalidJobError,
    InvalidUser,
    UnknownJobType,
)
from django_quickworker.models import WorkerJob
from django_quickworker.registry import registry
from django_quickworker.schedule import validate_cron
from django_quickworker.submit import build_job, submit_job


class SubmitJobForm(forms.ModelForm):
    """Submit a job through ``submit_job``, so every rule that applies in code applies here."""

    type = forms.ChoiceField(label=_("Type"), choices=())
    tag = forms.CharField(
        label=_("Tag"),
        max_length=255,
        help_text=_("Scheduled jobs with the same tag are replaced, unless you allow both."),
    )
    data = forms.CharField(  # type: ignore[assignment]  # a field, though BaseForm.data is the input
        label=_("Data"),
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 8, "class": "vLargeTextField qw-code"}),
        help_text=_('JSON, e.g. {"email": "a@example.com"}; empty means {}.'),
    )
    due = forms.SplitDateTimeField(
        label=_("Due"),
        required=False,
        widget=AdminSplitDateTime,
        help_text=_("Leave due and delay empty to run it now (or at the next cron tick)."),
    )
    delay = forms.FloatField(
        label=_("Delay"), required=False, min_value=0, help_text=_("Seconds from now.")
    )
    cron = forms.CharField(
        label=_("Cron schedule"),
        required=False,
        max_length=100,
        help_text=_(
            "Repeat on this schedule: 5 fields, 6 with seconds first, or @hourly; read in "
            "QUICKWORKER['CRON_TIME_ZONE'] (default: TIME_ZONE)."
        ),
    )
    queue = forms.CharField(
        label=_("Queue"), required=False, max_length=100, help_text=_("Empty: the type's queue.")
    )
    priority = forms.IntegerField(
        label=_("Priority"),
        required=False,
        help_text=_("Higher runs first. Empty: the type's priority."),
    )
    max_attempts = forms.IntegerField(
        label=_("Max attempts"),
        required=False,
        min_value=1,
        help_text=_("More than 1 retries failed runs. Empty: the type's setting."),
    )
    on_duplicate_tag = forms.ChoiceField(
        label=_("If the tag is taken"),
        choices=[
            ("replace", _("Cancel the scheduled jobs with this tag")),
            ("allow", _("Keep them too")),
        ],
        initial="replace",
    )

    class Meta:
        model = WorkerJob
        fields = ["type", "tag", "user", "data", "queue", "priority", "max_attempts"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(job_type.name, job_type.name) for job_type in registry]
        self.fields["type"].choices = [("", "---------"), *choices]  # type: ignore[attr-defined]

    def clean_data(self) -> Any:
        text = self.cleaned_data["data"].strip()
        if not text:
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(
                _("This is not valid JSON: %(error)s at line %(line)d, column %(column)d."),
                params={"error": error.msg, "line": error.lineno, "column": error.colno},
                code="invalid_json",
            ) from None

    def clean_cron(self) -> str:
        cron = self.cleaned_data["cron"].strip()
        try:
            return validate_cron(cron) if cron else ""
        except InvalidCronSchedule as error:
            raise forms.ValidationError(str(error), code="invalid_cron") from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors:
            try:  # the checks submit_job makes, without writing anything
                build_job(self.submission(), timezone.now())
            except InvalidJobError as error:
                self.add_error(self._field_of(error), str(error))
        return cleaned

    def submission(self) -> dict[str, Any]:
        """The ``submit_job`` arguments; empty optional fields take the type's defaults."""
        cleaned = self.cleaned_data
        return {
            "tag": cleaned["tag"],
            "type": cleaned["type"],
            "user": cleaned.get("user"),
            "data": cleaned.get("data"),
            "due": cleaned.get("due"),
            "delay": cleaned.get("delay"),
            "cron": cleaned.get("cron") or None,
            "queue": cleaned.get("queue") or None,
            "priority": cleaned.get("priority"),
            "max_attempts": cleaned.get("max_attempts"),
        }

    def submit(self) -> WorkerJob:
        return submit_job(
            **self.submission(), on_duplicate_tag=self.cleaned_data["on_duplicate_tag"]
        )

    def _field_of(self, error: InvalidJobError) -> str | None:
        """The form field an error is about: by its class, else by the "name=..." it opens with."""
        for error_class, field in ERROR_FIELDS.items():
            if isinstance(error, error_class):
                return field
        name = str(error).split("=", 1)[0]
        return name if name in self.fields else None


ERROR_FIELDS: dict[type[InvalidJobError], str] = {
    UnknownJobType: "type",
    InvalidJobData: "data",
    InvalidCronSchedule: "cron",
    InvalidUser: "user",
}
