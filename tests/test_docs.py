"""The guide in docs/ and the README stay true: their examples run, and the guide's reference
pages match the code.

- Every ``.. code-block:: python`` runs, in page order, in one namespace per page, on the
  test database (rolled back afterwards), with the job registry restored after the page.
  A block right after the rst comment ``.. compile-only`` is compiled, not run. Tracebacks
  point at the block's own lines in the .rst file.
- Settings snippets are checked as settings: a ``QUICKWORKER`` dict passes the system
  checks, ``CHANNEL_LAYERS`` backends import, SQLite ``DATABASES`` use IMMEDIATE
  transactions, ``LOGGING`` configures loggers that exist.
- Console and ini blocks: every ``manage.py`` command line parses with that command's own
  parser, and every ``django-quickworker[extra]`` exists in setup.cfg.
- HTML blocks render as Django templates and the static files they load exist; JavaScript
  blocks pass ``QuickWorker.connect`` only options that notifications.js reads; JSON blocks
  showing ``quickworker status --json`` have exactly its keys.
- settings.rst documents exactly the settings in django_quickworker.conf, with their
  defaults and types; the WorkerJob field table and the logger table list exactly what
  the code has.
- Code is only ever shown in ``.. code-block::`` directives of a known language, so nothing
  escapes these checks.
- The README's fenced blocks (python, sh, html) get the same checks as the guide's python,
  shell and HTML blocks, in one namespace for the whole README.
"""

import ast
import builtins
import configparser
import contextlib
import http.server
import inspect
import json
import re
import shlex
import symtable
import sys
import textwrap
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import django
import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, get_commands, load_command_class
from django.template import Context, Template
from django.test import RequestFactory, override_settings
from django.utils.module_loading import import_string

from django_quickworker import conf as conf_module
from django_quickworker import processes
from django_quickworker.checks import check_configuration
from django_quickworker.conf import DEFAULTS, ENV_DEFAULTS, conf
from django_quickworker.context import JobContext
from django_quickworker.cron import ensure_cron_jobs
from django_quickworker.exceptions import RetryJob
from django_quickworker.models import WorkerJob
from django_quickworker.overview import summarize
from django_quickworker.registry import JobRegistry

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.rst"))
PACKAGE = REPO / "django_quickworker"

LANGUAGES = {"python", "console", "ini", "html+django", "javascript", "json", "text"}
COMPILE_ONLY = ".. compile-only"
DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. (?P<name>[\w:+-]+)::(?: *(?P<argument>\S+))?")


@dataclass(frozen=True)
class Block:
    """One ``.. code-block::`` of a page."""

    page: Path
    line: int  # the line of its first line of code, counted from 1
    language: str
    code: str
    compile_only: bool

    def __str__(self) -> str:
        return f"{self.page.name}:{self.line}"


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def code_blocks(page: Path) -> list[Block]:
    """The page's code blocks, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    for index, line in enumerate(lines):
        match = DIRECTIVE.match(line)
        if not match or match["name"] != "code-block":
            continue
        indent = indent_of(line)
        end = start = index + 1
        while end < len(lines) and (not lines[end].strip() or indent_of(lines[end]) > indent):
            end += 1
        body = lines[start:end]
        while body and (not body[0].strip() or body[0].strip().startswith(":")):  # options
            body, start = body[1:], start + 1
        previous = next((text for text in reversed(lines[:index]) if text.strip()), "")
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        language = match["argument"] or ""
        blocks.append(Block(page, start + 1, language, code, previous.strip() == COMPILE_ONLY))
    return blocks


README = REPO / "README.md"
FENCE = re.compile(r"^```(?P<language>[\w+-]*)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
# The README's fence languages, named as the guide's: its HTML is a Django template, and
# shell lines carry no prompt.
README_LANGUAGES = {"python": "python", "sh": "sh", "html": "html+django"}


def readme_blocks(readme: Path = README) -> list[Block]:
    """The README's fenced code blocks, in order."""
    text = readme.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1
        language = README_LANGUAGES.get(match["language"], match["language"])
        blocks.append(Block(readme, line, language, match["code"], compile_only=False))
    return blocks


def blocks_of(page: Path) -> list[Block]:
    return readme_blocks(page) if page.suffix == ".md" else code_blocks(page)


BLOCKS = [block for page in PAGES for block in code_blocks(page)] + readme_blocks()
PYTHON_PAGES = sorted({block.page for block in BLOCKS if block.language == "python"})


def blocks_in(language: str) -> list[Block]:
    return [block for block in BLOCKS if block.language == language]


def test_the_docs_have_pages_and_examples() -> None:
    assert {page.stem for page in PAGES} >= {"index", "settings", "reference"}
    assert len(blocks_in("python")) > 20
    assert README in PYTHON_PAGES


def test_the_readme_shows_code_only_in_fences_it_checks() -> None:
    blocks = readme_blocks()
    assert len([block for block in blocks if block.language == "python"]) >= 8
    for block in blocks:
        assert block.language in README_LANGUAGES.values(), f"{block}: ```{block.language}"
        assert block.code.strip(), f"{block}: an empty code block"
    fences = README.read_text(encoding="utf-8").count("\n```")
    assert fences == 2 * len(blocks), "a fence the parser missed, or one left open"


def test_readme_blocks_are_found_with_their_first_line(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\n```python\nx = 1\n\ny = 2\n```\n\nText.\n\n```html\n<p>\n```\n")
    first, second = readme_blocks(readme)
    assert (first.line, first.language, first.code) == (4, "python", "x = 1\n\ny = 2\n")
    assert (second.line, second.language, second.code) == (12, "html+django", "<p>\n")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.stem)
def test_code_is_shown_only_in_code_blocks_of_known_languages(page: Path) -> None:
    """Literal blocks (``::``), doctest blocks and includes would escape these tests."""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        match = DIRECTIVE.match(line)
        if match:
            assert match["name"] not in {"code", "sourcecode", "literalinclude", "doctest"}, (
                f"{page.name}:{number}: use '.. code-block:: LANGUAGE' so the example is tested"
            )
        else:
            assert not line.rstrip().endswith("::"), (
                f"{page.name}:{number}: a '::' literal block; use '.. code-block:: LANGUAGE'"
            )
            assert not line.lstrip().startswith(">>>"), f"{page.name}:{number}: a doctest block"
    for block in code_blocks(page):
        assert block.language in LANGUAGES, f"{block}: code-block language {block.language!r}"
        assert block.code.strip(), f"{block}: an empty code block"


def test_code_blocks_are_found_with_their_first_line_and_marker(tmp_path: Path) -> None:
    page = tmp_path / "sample.rst"
    page.write_text(
        "Title\n=====\n\n.. code-block:: python\n   :caption: one\n\n    x = 1\n\n    y = 2\n"
        "Text.\n\n.. compile-only\n\n.. code-block:: console\n\n    $ python manage.py migrate\n",
        encoding="utf-8",
    )
    first, second = code_blocks(page)
    assert (first.line, first.language, first.code, first.compile_only) == (
        7,
        "python",
        "x = 1\n\ny = 2\n",
        False,
    )
    assert (second.line, second.language, second.compile_only) == (16, "console", True)


def test_compile_only_blocks_are_few() -> None:
    """Blocks that cannot run here are compiled only: they need a server, set up a process-wide
    SDK (Sentry, OpenTelemetry) or a newer Django than the env's. Keep them rare."""
    compile_only = [block for block in BLOCKS if block.compile_only]
    assert all(block.language == "python" for block in compile_only), compile_only
    assert len(compile_only) <= 4, [str(block) for block in compile_only]


# Python examples


@pytest.mark.django_db
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda page: page.stem)
def test_python_examples_run(page: Path, job_registry: JobRegistry) -> None:
    run_python_examples(page)


# The examples import Django 6's django.tasks; on Django 5.2 the same API comes from the
# django-tasks backport, which the guide tells readers to import instead (tasks.rst).
if django.VERSION < (6, 0):
    import django_tasks

    sys.modules.setdefault("django.tasks", django_tasks)


def run_python_examples(page: Path) -> dict[str, Any]:
    """Run the page's python blocks in order, as the body of a module ``docs.<page>``;
    return the namespace they filled."""
    # A real, importable module, as a project's tasks.py is: the Tasks backend finds a task
    # again by its module path when it reads a result.
    module = types.ModuleType(f"docs.{page.stem}")
    sys.modules[module.__name__] = module
    namespace: dict[str, Any] = module.__dict__
    for block in blocks_of(page):
        if block.language != "python":
            continue
        # Padded so that tracebacks give the line numbers of the .rst file.
        code = compile("\n" * (block.line - 1) + block.code, str(block.page), "exec")
        if block.compile_only:
            continue
        exec(code, namespace)
        for name in assigned_names(block.code):
            check = SETTING_CHECKS.get(name)
            if check:
                check(block, namespace[name])
    for block in blocks_of(page):
        if block.language == "python" and not block.compile_only:
            # A function body runs only when called: a missing import would pass unseen.
            missing = globals_read_by_functions(block.code) - set(namespace) - set(dir(builtins))
            assert not missing, f"{block}: its functions use {sorted(missing)}, never imported"
    return namespace


def globals_read_by_functions(code: str) -> set[str]:
    """The names that the functions of ``code`` read from their module (or builtins)."""
    names: set[str] = set()
    tables = [symtable.symtable(code, "<block>", "exec")]
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        if table.get_type() == "function":
            names |= {
                symbol.get_name()
                for symbol in table.get_symbols()
                if symbol.is_global() and symbol.is_referenced()
            }
    return names


def test_globals_read_by_functions_are_found() -> None:
    code = "import os\n\n\ndef f(ctx):\n    send_mail(ctx.data, os.sep, [len(x) for x in y])\n"
    assert globals_read_by_functions(code) == {"send_mail", "os", "len", "y"}


@pytest.mark.django_db
def test_the_readme_quickstart_sends_its_welcome_mail(
    job_registry: JobRegistry, mailoutbox: list[Any]
) -> None:
    readme = run_python_examples(README)
    ada = get_user_model().objects.create_user("ada", "ada@example.com")
    request = RequestFactory().post("/welcome/")
    request.user = ada

    response = readme["send_welcome"](request)

    job = WorkerJob.objects.get(tag=f"welcome:{ada.pk}")
    assert (response.status_code, job.type, job.user) == (202, "sendWelcomeEmail", ada)
    assert readme["send_welcome_email"](JobContext(job)) == {"sent_to": "ada@example.com"}
    assert [message.to for message in mailoutbox] == [["ada@example.com"]]


@pytest.mark.django_db  # the README's blocks enqueue a task
def test_the_readme_charge_job_retries_a_busy_gateway_in_a_minute(
    job_registry: JobRegistry,
) -> None:
    readme = run_python_examples(README)
    with busy_gateway() as url, pytest.raises(RetryJob) as retry:
        readme["charge"](JobContext(WorkerJob(tag="t", type="charge", data={"gateway_url": url})))

    assert retry.value.delay == 60


@contextlib.contextmanager
def busy_gateway() -> Iterator[str]:
    """The URL of a real HTTP server that answers every POST with 503 Service Unavailable."""

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_error(503)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/charge"
        finally:
            server.shutdown()
            thread.join()


def assigned_names(code: str) -> set[str]:
    """The names a block assigns at its top level."""
    names = set()
    for statement in ast.parse(code).body:
        if isinstance(statement, ast.Assign):
            names |= {target.id for target in statement.targets if isinstance(target, ast.Name)}
    return names


def check_quickworker(block: Block, value: Any) -> None:
    with override_settings(QUICKWORKER=value):
        assert check_configuration(None) == [], f"{block}: QUICKWORKER fails the checks"


def check_channel_layers(block: Block, value: Any) -> None:
    for alias, layer in value.items():
        import_string(layer["BACKEND"])  # raises if the backend cannot be imported
        assert isinstance(layer.get("CONFIG", {}), dict), f"{block}: {alias}"


def check_databases(block: Block, value: Any) -> None:
    for alias, database in value.items():
        if database["ENGINE"] == "django.db.backends.sqlite3":
            mode = database.get("OPTIONS", {}).get("transaction_mode", "")
            assert mode.upper() == "IMMEDIATE", f"{block}: {alias} would fail quickworker.W001"


def check_installed_apps(block: Block, value: Any) -> None:
    assert "django_quickworker" in value, f"{block}: django_quickworker is not installed"


def check_email_backend(block: Block, value: Any) -> None:
    import_string(value)  # raises if the backend cannot be imported


def check_logging(block: Block, value: Any) -> None:
    unknown = {
        name for name in value.get("loggers", {}) if name.startswith("django_quickworker")
    } - package_loggers()
    assert not unknown, f"{block}: no such logger {sorted(unknown)}"


SETTING_CHECKS = {
    "QUICKWORKER": check_quickworker,
    "CHANNEL_LAYERS": check_channel_layers,
    "DATABASES": check_databases,
    "INSTALLED_APPS": check_installed_apps,
    "LOGGING": check_logging,
    "EMAIL_BACKEND": check_email_backend,
}


def package_loggers() -> set[str]:
    """Every logger name the package logs to (and the package logger above them)."""
    names = {"django_quickworker"}
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        if "logging.getLogger(__name__)" in source:
            names.add(module)
        names |= set(re.findall(r"logging\.getLogger\(\"([\w.]+)\"\)", source))
    return names


# Console, ini, HTML, JavaScript and JSON examples


def command_lines(block: Block) -> list[list[str]]:
    """The arguments after ``manage.py`` on each line of a shell or ini block that has one."""
    found = []
    for line in block.code.splitlines():
        if block.language == "console" and not line.startswith("$ "):
            continue  # output, not a command
        words = shlex.split(line.removeprefix("$ "), comments=True)
        manage = [index for index, word in enumerate(words) if word.endswith("manage.py")]
        if manage:
            found.append(words[manage[0] + 1 :])
    return found


SHELL_BLOCKS = blocks_in("console") + blocks_in("ini") + blocks_in("sh")


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=str)
def test_manage_py_commands_parse(block: Block) -> None:
    commands = get_commands()
    for arguments in command_lines(block):
        name, *options = arguments
        assert name in commands, f"{block}: there is no command {name!r}"
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        try:
            parser.parse_args(options)
        except CommandError as error:
            pytest.fail(f"{block}: manage.py {shlex.join(arguments)}: {error}")


def test_every_manage_py_line_is_checked() -> None:
    """The commands the guide documents appear in checked blocks."""
    checked = {arguments[0] for block in SHELL_BLOCKS for arguments in command_lines(block)}
    assert {"runworkers", "quickworker", "migrate"} <= checked


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=str)
def test_pip_extras_exist(block: Block) -> None:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    extras = set(parser["options.extras_require"])
    for line in block.code.splitlines():
        if "pip install" not in line:
            continue
        for word in shlex.split(line.removeprefix("$ "), comments=True):
            match = re.fullmatch(r"django-quickworker\[([\w,-]+)\]", word)
            if match:
                assert set(match[1].split(",")) <= extras, f"{block}: {word}"


@pytest.mark.parametrize("block", blocks_in("html+django"), ids=str)
def test_html_examples_render_and_load_static_files_that_exist(block: Block) -> None:
    Template(block.code).render(Context({}))
    for path in re.findall(r"{% static ['\"]([^'\"]+)['\"] %}", block.code):
        assert finders.find(path), f"{block}: no static file {path!r}"


def connect_options(code: str) -> set[str]:
    """The keys of the object literals passed to ``QuickWorker.connect`` in ``code``."""
    keys: set[str] = set()
    token = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|//[^\n]*|[{}()\[\]]|(\w+)\s*:")
    for call in re.finditer(r"QuickWorker\.connect\(\s*\{", code):
        depth = 1
        for match in token.finditer(code, call.end()):
            text = match[0]
            if text in "{([":
                depth += 1
            elif text in "})]":
                depth -= 1
                if depth == 0:
                    break
            elif match[1] and depth == 1:
                keys.add(match[1])
    return keys


@pytest.mark.parametrize("block", blocks_in("javascript") + blocks_in("html+django"), ids=str)
def test_javascript_examples_use_options_the_helper_reads(block: Block) -> None:
    helper = (PACKAGE / "static/django_quickworker/notifications.js").read_text(encoding="utf-8")
    known = set(re.findall(r"options\.(\w+)", helper))
    assert connect_options(block.code) <= known, f"{block}: the helper reads only {known}"


def test_connect_options_are_found() -> None:
    code = 'QuickWorker.connect({url: "/ws/", on: {"job.progress": (d) => f({a: 1})}});'
    assert connect_options(code) == {"url", "on"}


@pytest.mark.django_db
@pytest.mark.parametrize("block", blocks_in("json"), ids=str)
def test_json_examples_match_what_the_code_prints(block: Block) -> None:
    shown = json.loads(block.code)
    if "healthy" in shown:  # quickworker status --json
        processes.register(2, None)
        ensure_cron_jobs()  # a healthy queue: the declared cron jobs have their rows
        assert key_tree(shown) == key_tree(summarize().as_dict()), f"{block}"


def key_tree(value: Any) -> Any:
    """The keys of ``value``, nested: what a sample must share with real output."""
    if isinstance(value, dict):
        return {key: key_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [key_tree(value[0])] if value else []
    return None


# Reference tables


@dataclass
class Setting:
    name: str
    section: str
    fields: dict[str, str]


def documented_settings() -> list[Setting]:
    """The settings described in settings.rst: ``NAME`` headings with a field list."""
    lines = (DOCS / "settings.rst").read_text(encoding="utf-8").splitlines()
    settings: list[Setting] = []
    section = ""
    for line, underline in zip(lines, [*lines[1:], ""], strict=True):
        if underline and set(underline) == {"-"} and len(underline) >= len(line):
            section = line
        elif underline and set(underline) == {"~"} and re.fullmatch(r"``[A-Z_]+``", line):
            settings.append(Setting(line.strip("`"), section, {}))
        elif settings and (field := re.fullmatch(r":(\w+): (.+)", line)):
            settings[-1].fields[field[1]] = field[2]
    return settings


def literal(text: str) -> Any:
    match = re.fullmatch(r"``(.+?)``.*", text)
    assert match, f"{text!r} does not start with a ``literal``"
    return ast.literal_eval(match[1])


def same(shown: Any, actual: Any) -> bool:
    return bool(shown == actual and type(shown) is type(actual))


def test_settings_reference_lists_every_setting_with_its_default() -> None:
    settings = documented_settings()
    environment = {s.name: s for s in settings if s.section == "Environment variables"}
    quickworker = {s.name: s for s in settings if s.section == "The QUICKWORKER setting"}
    assert len(environment) + len(quickworker) == len(settings), "a setting in no section"
    assert sorted(environment) == sorted(ENV_DEFAULTS)
    assert sorted(quickworker) == sorted(DEFAULTS)
    for name, setting in [*environment.items(), *quickworker.items()]:
        assert {"Type", "Default"} <= set(setting.fields), f"{name} lacks Type or Default"
    for name, setting in environment.items():
        assert same(literal(setting.fields["Default"]), ENV_DEFAULTS[name]), name
    for name, setting in quickworker.items():
        assert same(literal(setting.fields["Default"]), DEFAULTS[name]), name


def test_every_conf_property_is_a_documented_setting() -> None:
    properties = {
        name for name, value in vars(conf_module.Conf).items() if isinstance(value, property)
    }
    assert properties == {name.lower() for name in [*DEFAULTS, *ENV_DEFAULTS]}


# What each documented QUICKWORKER type must accept and refuse.
TYPE_PROBES: dict[str, tuple[list[Any], list[Any]]] = {
    "duration": ([timedelta(seconds=5), 5, 2.5, 0], [-1, "5", None]),
    "positive duration": ([timedelta(seconds=5), 5, 0.25], [0, -1, "5"]),
    "positive integer": ([1, 3], [0, 2.5, True, "3"]),
    "time zone name or None": (["Europe/Paris", None], ["Mars/Olympus_Mons", 5]),
    "group name prefix": (["myproject", "my-site.v2"], ["has space", "", "x" * 51]),
    "boolean": ([True, False], [1, 0, "yes", None]),
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_each_documented_type_is_what_conf_accepts(name: str) -> None:
    (setting,) = (s for s in documented_settings() if s.name == name)
    kind = setting.fields["Type"]
    assert kind in TYPE_PROBES, f"{name}: Type must be one of {sorted(TYPE_PROBES)}"
    accepted, refused = TYPE_PROBES[kind]
    for value in accepted:
        with override_settings(QUICKWORKER={name: value}):
            getattr(conf, name.lower())
    for value in refused:
        with override_settings(QUICKWORKER={name: value}), pytest.raises(ImproperlyConfigured):
            getattr(conf, name.lower())


def table_names(page: str, label: str) -> list[str]:
    """The first-column ``names`` of the list-table that follows ``.. _label:`` on ``page``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    after = text.split(f".. _{label}:", 1)[1]
    lines = after.split(".. list-table::", 1)[1].splitlines()[1:]
    table = []
    for line in lines:
        if line.strip() and indent_of(line) == 0:
            break  # the table ends at the next unindented line
        table.append(line)
    rows = re.findall(r"^ {3}\* - ``([\w.]+)``", "\n".join(table), re.MULTILINE)
    assert rows, f"no table after {label}"
    return rows


def test_the_workerjob_field_table_lists_every_field() -> None:
    fields = [field.name for field in WorkerJob._meta.concrete_fields]
    assert sorted(table_names("reference.rst", "workerjob-fields")) == sorted(fields)


def test_the_logger_table_lists_every_logger() -> None:
    assert sorted(table_names("operations.rst", "loggers")) == sorted(package_loggers())


def test_the_submit_job_table_lists_every_option() -> None:
    from django_quickworker import submit_job

    options = inspect.signature(submit_job).parameters
    assert sorted(table_names("reference.rst", "submit-job-options")) == sorted(options)


# Names mentioned in the prose


def all_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in PAGES)


def test_every_ctx_attribute_mentioned_exists() -> None:
    ctx = JobContext(WorkerJob(tag="t", type="t"))
    mentioned = set(re.findall(r"\bctx\.(\w+)", all_text()))
    manual = re.findall(r"^ {3}\.\. (?:property|attribute):: (\w+)", all_text(), re.MULTILINE)
    missing = {name for name in mentioned | set(manual) if not hasattr(ctx, name)}
    assert not missing, f"JobContext has no {sorted(missing)}"


def test_every_queryset_method_mentioned_exists() -> None:
    mentioned = set(re.findall(r"WorkerJob\.objects\.(\w+)", all_text()))
    assert mentioned, "no WorkerJob.objects call in the docs"
    missing = {name for name in mentioned if not hasattr(WorkerJob.objects, name)}
    assert not missing, f"WorkerJob.objects has no {sorted(missing)}"


def test_every_quickworker_setting_mentioned_exists() -> None:
    mentioned = set(re.findall(r"QUICKWORKER\[[\"'](\w+)[\"']\]", all_text()))
    assert mentioned - set(DEFAULTS) == set()


def test_every_check_id_mentioned_exists() -> None:
    # The general checks, and each database's own (in the database seam).
    sources = [PACKAGE / "checks.py", *sorted((PACKAGE / "databases").glob("*.py"))]
    source = "\n".join(path.read_text(encoding="utf-8") for path in sources)
    ids = set(re.findall(r"quickworker\.[EW]\d{3}", source))
    mentioned = set(re.findall(r"quickworker\.[EW]\d{3}", all_text()))
    assert mentioned == ids


def package_modules() -> set[str]:
    """The dotted name of every module and package of django_quickworker (the generated
    migrations as one package)."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        elif "migrations" in parts:
            continue
        names.add(".".join(parts))
    return names


def test_the_internals_page_describes_every_module() -> None:
    """internals.rst has a paragraph per module, naming it as ``django_quickworker.x``: a new
    module without one, or a paragraph about a module that is gone, fails here."""
    text = (DOCS / "internals.rst").read_text(encoding="utf-8")
    mentioned = set(re.findall(r"``(django_quickworker(?:\.\w+)*)``", text))
    modules = package_modules()
    assert "django_quickworker.admin.actions" in modules  # the walk finds subpackages
    assert sorted(modules - mentioned) == [], "modules without a paragraph in internals.rst"
    assert sorted(mentioned - modules) == [], "internals.rst describes modules that do not exist"
