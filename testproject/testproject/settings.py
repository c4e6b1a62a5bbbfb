"""Settings of the test project, read from the environment.

DATABASE_URL  database (default: a SQLite file beside this project, so nothing else is needed)
REDIS_URL     channel layer on Redis via channels_redis (default: the in-memory layer)
QUICKWORKER   django-quickworker's settings as JSON (default: {})
TEST_DATABASE_NAME  name of the test database (tox gives each env its own)
USE_TZ        Django's USE_TZ (default: True; False stores naive times in TIME_ZONE)
TIME_ZONE     Django's TIME_ZONE (default: UTC)
SECRET_KEY, DEBUG
"""

from pathlib import Path

import django
import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SECRET_KEY = env.str("SECRET_KEY", default="insecure-test-project-key")
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_quickworker",
    "demo",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # the Tasks framework's backport, for its signals

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"
ASGI_APPLICATION = "testproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and web requests write at once: take SQLite's write lock at BEGIN and wait
    # for it, rather than fail halfway through a transaction; and keep a write-ahead log,
    # so that readers (the admin, the status command) never block the workers' writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # READ COMMITTED is what the queue needs (check quickworker.E006), and Django's default:
    # said here so that it shows. utf8mb4: MySQL's "utf8" cannot store every character.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"isolation_level": "read committed", "charset": "utf8mb4"}
    )
    # A binary collation, so that tags, types and queues compare as on the other databases.
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_bin"}
if env.str("TEST_DATABASE_NAME", default=""):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env.str("TEST_DATABASE_NAME")
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: the tests' runworkers processes must see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test.sqlite3")}

if env.str("REDIS_URL", default=""):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout None: redis-py 8 defaults to 5 s, which ends channels_redis's
            # blocking reads and closes websockets that stay quiet that long
            # (redis/redis-py#4091, django/channels_redis#422).
            "CONFIG": {"hosts": [{"address": env.str("REDIS_URL"), "socket_timeout": None}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# django-quickworker's settings, as JSON (e.g. QUICKWORKER='{"POLL_INTERVAL": 0.2}').
QUICKWORKER = env.json("QUICKWORKER", default={})

# Django's Tasks framework on runworkers (demo/tasks.py). Besides the default alias, each
# other one gives its tasks options that Django 6.0 cannot set per task.
TASKS = {
    "default": {
        "BACKEND": "django_quickworker.tasks.QuickworkerBackend",
        "QUEUES": ["default", "other"],
    },
    "retrying": {
        "BACKEND": "django_quickworker.tasks.QuickworkerBackend",
        "OPTIONS": {"MAX_ATTEMPTS": 3},
    },
    "patient": {
        "BACKEND": "django_quickworker.tasks.QuickworkerBackend",
        "OPTIONS": {"MAX_ATTEMPTS": 2, "RETRY_DELAY": 3600},
    },
    "limited": {
        "BACKEND": "django_quickworker.tasks.QuickworkerBackend",
        "OPTIONS": {"TIMEOUT": 1},
    },
}

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = env.bool("USE_TZ", default=True)
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "admin:login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_quickworker": {"handlers": ["console"], "level": "INFO"},
        # The Tasks framework logs every task start and finish (at INFO) from its signals.
        **{
            name: {"handlers": ["console"], "level": env.str("TASKS_LOG_LEVEL", default="WARNING")}
            for name in ("django.tasks", "django_tasks")
        },
    },
}
