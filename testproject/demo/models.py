from django.db import models


class Execution(models.Model):
    """One run of a demo job, recorded by the job itself: tests count these to prove that
    every job ran exactly once."""

    job_id = models.BigIntegerField("job id", db_index=True)
    worker = models.CharField("worker", max_length=255)
    started = models.DateTimeField("started", auto_now_add=True)

    def __str__(self) -> str:
        return f"job {self.job_id} on {self.worker}"
