"""The documents' figures are the benchmarks' JSON, not prose that can drift from it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))

import numbers_page  # noqa: E402


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
