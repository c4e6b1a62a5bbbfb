"""Check the built wheel and sdist: they hold the migrations, templates and py.typed, and the
wheel installs and imports on its own (outside the source tree)."""

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REQUIRED = [
    "django_quickworker/__init__.py",
    "django_quickworker/py.typed",
    "django_quickworker/migrations/0001_initial.py",
]


def main(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        wheel_names = set(archive.namelist())
    with tarfile.open(sdist) as archive:
        # sdist members sit under "name-version/"; drop that prefix.
        sdist_names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for name in REQUIRED:
        assert name in wheel_names, f"{wheel.name} lacks {name}"
        assert name in sdist_names, f"{sdist.name} lacks {name}"
    shipped_tests = sorted(
        name for name in wheel_names if name.startswith(("tests/", "testproject/"))
    )
    assert not shipped_tests, f"{wheel.name} ships test files: {shipped_tests[:3]}"
    with tempfile.TemporaryDirectory() as target:
        zipfile.ZipFile(wheel).extractall(target)  # a pure-Python wheel imports from its files
        code = "import django_quickworker.migrations; print(django_quickworker.__file__)"
        subprocess.run([sys.executable, "-c", code], check=True, cwd=target)
    print(f"{wheel.name} and {sdist.name} are complete and the wheel imports.")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
