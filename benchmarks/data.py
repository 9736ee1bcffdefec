"""Real text from ../shared/data/thucnews14, read in place (never copied into the repository)."""

from __future__ import annotations

import json
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
THUCNEWS = SHARED / "data" / "thucnews14"
TRAINED_MODEL = SHARED / "models" / "bert14-small-thucnews"


def require(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"{path} is absent: this benchmark reads the shared data in place")
    return path


def titles(split: str = "test") -> list[tuple[str, str]]:
    """(label, text) rows of train.tsv or test.tsv."""
    rows = []
    for line in require(THUCNEWS / f"{split}.tsv").read_text(encoding="utf-8").split("\n")[1:]:
        if line:
            label, text = line.split("\t", 1)
            rows.append((label, text))
    return rows


def articles() -> list[tuple[str, str]]:
    rows = []
    for line in require(THUCNEWS / "articles.jsonl").read_text(encoding="utf-8").split("\n"):
        if line:
            item = json.loads(line)
            rows.append((item["label"], item["text"]))
    return rows
