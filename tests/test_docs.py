"""The documents' figures are the benchmarks' JSON, not prose that can drift from it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))

import numbers_page  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_numbers_page_and_readme_say_what_the_benchmark_json_says() -> None:
    page = numbers_page.PAGE.read_text(encoding="utf-8")
    readme = numbers_page.README.read_text(encoding="utf-8")
    assert numbers_page.render(page, readme) == (page, readme), "run docs/numbers_page.py"


def test_a_figure_edited_by_hand_is_put_back() -> None:
    page = numbers_page.PAGE.read_text(encoding="utf-8")
    readme = numbers_page.README.read_text(encoding="utf-8")
    start = readme.index("<!-- BEGIN generated:headline -->")
    tampered = readme[:start] + readme[start:].replace(" faster", " faster (and then some)", 1)
    assert tampered != readme
    assert numbers_page.render(page, tampered)[1] == readme


def test_the_support_table_says_what_the_family_benchmark_json_says() -> None:
    page = numbers_page.CHECKPOINTS.read_text(encoding="utf-8")
    assert "<!-- BEGIN generated:support -->" in page
    assert numbers_page.render_checkpoints(page) == page, "run docs/numbers_page.py"


def test_the_readmes_commands_work_from_a_fresh_shell_as_written() -> None:
    """A new user's shell after `make export` has no bert14 on PATH: the README says how to get it, and
    installs only from this checkout (`pip install 'bert14[serve]'` asked the package index for a
    project of that name)."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "source .venv/bin/activate" in readme and ".venv/bin/bert14" in readme
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for command in re.findall(r"pip install [^`\n]*", page.read_text(encoding="utf-8")):
            assert "bert14[" not in command.replace("'", "").replace('"', ""), f"{page.name}: {command}"
    # The console script the README's commands run is what `make` installs into .venv/bin.
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install --quiet --no-deps -e ." in makefile
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'bert14 = "bert14.commands.cli:main"' in pyproject


def test_curl_examples_send_json_as_the_server_requires() -> None:
    import re

    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for command in re.findall(r"curl [^`\n]*-d [^`\n]*", page.read_text(encoding="utf-8")):
            assert "Content-Type: application/json" in command, f"{page.name}: {command}"
