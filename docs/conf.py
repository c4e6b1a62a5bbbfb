"""Sphinx configuration of the django-quickworker guide.

Build it with warnings as errors and every cross-reference checked (``-n``)::

    sphinx-build -W --keep-going -n -b html docs docs/_build/html

autodoc imports the package, so Django is set up with the test project's settings first.
``.. command-help::`` prints a management command's ``--help`` from its own parser, so the
command reference cannot drift from the code. The examples are run by tests/test_docs.py.
"""

import os
import sys
from pathlib import Path

import django
from django.core.management import get_commands, load_command_class
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "testproject")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
os.environ["COLUMNS"] = "88"  # argparse wraps --help to the terminal: make it the same everywhere
django.setup()

from django_quickworker import __version__  # noqa: E402  (needs django.setup())

project = "django-quickworker"
author = "django-quickworker contributors"
copyright = "django-quickworker contributors"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
exclude_patterns = ["_build", "requirements.txt"]
root_doc = "index"
html_theme = "alabaster"
html_title = f"django-quickworker {release}"
html_theme_options = {
    "description": "Background jobs from your own database",
    "fixed_sidebar": True,
    "page_width": "1180px",  # room for 90-column code blocks and diagrams
    "body_max_width": "none",
}
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # show "timedelta(0)"-style defaults as written

# Every reference to a name documented here must resolve (-n). Names from Python, Django and
# Channels are left unresolved on purpose: resolving them needs intersphinx inventories, which
# are fetched over the network, and the build must work offline.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(datetime|collections\.abc|typing|asyncio|logging|zoneinfo|uuid)\..*"),
    (r"py:.*", r"(django|channels|asgiref)\..*"),
    (r"py:.*", r"(Any|Literal|ValueError|LookupError|Exception|timedelta|datetime|Model)"),
    (r"py:.*", r"(int|float|str|bool|dict|list|object|None)"),
    # Type aliases and TypeVars, shown by name in signatures.
    (r"py:.*", r"(JobFunction|Duration|OnDuplicateTag|django_quickworker\.submit\.OnDuplicateTag)"),
    (
        r"py:.*",
        r"(django_quickworker\.schedule\.Duration|django_quickworker\.registry\.JobFunction)",
    ),
]


class CommandHelp(SphinxDirective):
    """``.. command-help:: runworkers`` (or ``quickworker status``): the command's --help."""

    required_arguments = 1
    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        name, *subcommand = self.arguments
        command = load_command_class(get_commands()[name], name)
        parser = command.create_parser("manage.py", name)
        if subcommand:
            (choices,) = (
                action.choices
                for action in parser._actions
                if isinstance(action.choices, dict)  # the subparsers action
            )
            parser = choices[subcommand[0]]
        text = parser.format_help()
        return [nodes.literal_block(text, text, language="text")]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("command-help", CommandHelp)
    return {"parallel_read_safe": True}
