from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "Demo"

    def ready(self) -> None:
        from demo import signal_log, statement_log

        signal_log.connect_if_asked()
        statement_log.connect_if_asked()
