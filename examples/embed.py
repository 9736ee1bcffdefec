"""Embedding the bert14 runtime in another application: a tiny news-routing service.

It needs only the runtime's dependencies (numpy, onnxruntime, tokenizers): no torch, no
transformers. Run `make export` first (or point ARTIFACT at your own exported checkpoint), then:

    .venv/bin/python examples/embed.py [ARTIFACT]
"""

from __future__ import annotations

import sys
from collections import defaultdict

from bert14.errors import Bert14Error
from bert14.runtime import Classifier

DESKS = {"财经": "business", "股票": "business", "体育": "sports", "科技": "tech", "游戏": "tech"}


def route(clf: Classifier, headlines: list[str], min_score: float = 0.5) -> dict[str, list[str]]:
    """Headlines grouped by desk; unsure predictions go to a human editor."""
    desks: dict[str, list[str]] = defaultdict(list)
    for headline, prediction in zip(headlines, clf.predict(headlines), strict=True):
        desk = DESKS.get(prediction.label, "general") if prediction.score >= min_score else "editor"
        desks[desk].append(f"{headline}  [{prediction.label} {prediction.score:.2f}]")
    return dict(desks)


def main() -> int:
    artifact = sys.argv[1] if len(sys.argv) > 1 else "artifacts/bert14"
    try:
        clf = Classifier.load(artifact, precision="auto", provider="auto", threads=2)
    except Bert14Error as exc:
        print(f"cannot load the classifier: {exc}", file=sys.stderr)
        return 1
    print(f"loaded {artifact}: {clf.precision} on {clf.provider}, {len(clf.labels)} labels")
    headlines = ["央行宣布降准0.5个百分点", "湖人队主场击败勇士", "新款手机搭载自研芯片", "沪指午后翻红"]
    for desk, items in route(clf, headlines).items():
        print(desk)
        for item in items:
            print("  ", item)
    return 0


if __name__ == "__main__":
    sys.exit(main())
