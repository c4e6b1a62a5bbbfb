"""Create (or reset) the demo user and print its credentials."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERNAME = PASSWORD = "demo"


class Command(BaseCommand):
    help = "Create the demo user (a superuser, for the admin) and print its credentials."

    def handle(self, *args: Any, **options: Any) -> None:
        user, _ = get_user_model().objects.get_or_create(username=USERNAME)
        user.is_staff = user.is_superuser = True
        user.set_password(PASSWORD)
        user.save()
        self.stdout.write(f"Demo user: {USERNAME} / password: {PASSWORD}")
