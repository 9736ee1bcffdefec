"""Whole documents: what each long-text strategy buys on real articles, and what it costs.

Accuracy: the trained fixture (../shared/models/bert14-small-thucnews, trained on titles) exported with the
defaults, on the 70 THUCNews articles against their labels (half run past 512 tokens), for truncate,
head_tail (H 128), windows mean and windows max (stride 256, at most 64 windows), INT8 (the CPU default)
and fp32. Cost: ms per article of each strategy, 2 threads, the strategies interleaved per round, medians.

Speed at full size: the default BERT-14 artifact, INT8, 2 threads: articles/s of each strategy over the 70
articles (one predict() call per round, interleaved, medians). Memory: peak RSS of a fresh process that
loads that artifact and classifies one text of over 100,000 tokens (the articles repeated), for truncate,
head_tail, windows with the default cap and windows with a cap that covers the whole text, beside a
process that only loads the artifact.

    .venv/bin/python benchmarks/long_text.py --default artifacts/bert14 [--fixture DIR] \
        [--json docs/results/long_text.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import THREADS, measured
from data import TRAINED_MODEL, articles, require

STRATEGIES = {
    "truncate": {"strategy": "truncate"},
    "head_tail": {"strategy": "head_tail"},
    "windows mean": {"strategy": "windows", "pool": "mean"},
    "windows max": {"strategy": "windows", "pool": "max"},
}
HUGE_TOKENS = 100_000
COVER_ALL = 4096  # LongText's highest cap: every window of the 100,000-token text


def _spec(name: str):
    from bert14.long_text import LongText

    return LongText(**STRATEGIES[name])


def _timed_rounds(clf, texts: list[str], rounds: int) -> dict[str, list[float]]:  # noqa: ANN001
    """Seconds per predict() call of all `texts`, each strategy once per round, in turn."""
    samples: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    for name in STRATEGIES:  # warm-up
        clf.predict(texts[:4], long_text=_spec(name))
    for _ in range(rounds):
        for name in STRATEGIES:
            started = time.perf_counter()
            clf.predict(texts, long_text=_spec(name))
            samples[name].append(time.perf_counter() - started)
    return samples


def accuracy(fixture: Path, rounds: int) -> dict[str, object]:
    from bert14.runtime import Classifier

    rows = articles()
    texts, gold = [text for _, text in rows], [label for label, _ in rows]
    out: dict[str, object] = {"articles": len(rows)}
    clf = Classifier.load(fixture, precision="int8", provider="cpu", threads=THREADS, spinning=False)
    body = clf.max_length - 2
    long = [i for i, p in enumerate(clf.predict(texts)) if p.truncated]
    out["over_positions"] = len(long)
    out["positions"] = clf.max_length
    strategies: dict[str, dict[str, object]] = {}
    for precision in ("int8", "fp32"):
        runner = Classifier.load(fixture, precision=precision, provider="cpu", threads=THREADS, spinning=False)
        for name in STRATEGIES:
            predictions = runner.predict(texts, long_text=_spec(name))
            right = [p.label == g for p, g in zip(predictions, gold, strict=True)]
            entry = strategies.setdefault(name, {})
            entry[f"accuracy_{precision}"] = sum(right) / len(right)
            entry[f"accuracy_long_{precision}"] = sum(right[i] for i in long) / len(long)
            entry["rows"] = sum(p.windows for p in predictions)
    samples = _timed_rounds(clf, texts, rounds)
    base = statistics.median(samples["truncate"])
    for name, seconds in samples.items():
        median = statistics.median(seconds)
        strategies[name]["ms_per_article"] = 1000 * median / len(texts)
        strategies[name]["vs_truncate"] = median / base
    out["strategies"] = strategies
    out["rounds"] = rounds
    out["body_tokens"] = body
    return out


def speed(default: Path, rounds: int) -> dict[str, object]:
    from bert14.runtime import Classifier

    texts = [text for _, text in articles()]
    clf = Classifier.load(default, precision="int8", provider="cpu", threads=THREADS, spinning=False)
    samples = _timed_rounds(clf, texts, rounds)
    base = statistics.median(samples["truncate"])
    rows = {name: sum(p.windows for p in clf.predict(texts, long_text=_spec(name))) for name in STRATEGIES}
    return {
        "articles": len(texts),
        "rounds": rounds,
        "model_file": clf.model_file,
        "strategies": {
            name: {
                "articles_per_second": len(texts) / statistics.median(seconds),
                "vs_truncate": statistics.median(seconds) / base,
                "rows": rows[name],
            }
            for name, seconds in samples.items()
        },
    }


CHILD = """
import json, sys, time
from bert14.long_text import LongText
from bert14.runtime import Classifier
artifact, text_file, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
clf = Classifier.load(artifact, precision="int8", provider="cpu", threads=2, spinning=False)
out = {"strategy": spec}
if spec is not None:
    text = open(text_file, encoding="utf-8").read()
    started = time.perf_counter()
    p = clf.predict([text], long_text=LongText(**spec))[0]
    out.update(seconds=time.perf_counter() - started, windows=p.windows, tokens=p.tokens, truncated=p.truncated)
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child would
# report its parent's peak (the benchmark's own, with two models loaded).
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
out["peak_rss_mb"] = int(status["VmHWM"].split()[0]) / 1024
print(json.dumps(out))
"""


def memory(default: Path) -> dict[str, object]:
    from bert14.encode import token_count
    from bert14.tokenizer import load_tokenizer

    tokenizer, _ = load_tokenizer(default)
    pieces = [text for _, text in articles()]
    text = "\n".join(pieces)
    while token_count(tokenizer, text) < HUGE_TOKENS:
        text += "\n" + text
    tokens = token_count(tokenizer, text)
    runs = {
        "load only": None,
        "truncate": {"strategy": "truncate"},
        "head_tail": {"strategy": "head_tail"},
        "windows (default cap 64)": {"strategy": "windows"},
        f"windows (cap {COVER_ALL}: the whole text)": {"strategy": "windows", "max_windows": COVER_ALL},
    }
    out: dict[str, object] = {"text_tokens": tokens, "text_chars": len(text), "runs": {}}
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "huge.txt"
        path.write_text(text, encoding="utf-8")
        for name, spec in runs.items():
            env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
            done = subprocess.run([sys.executable, "-c", CHILD, str(default), str(path), json.dumps(spec)],
                                  capture_output=True, text=True, env=env, timeout=3600)  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"memory run {name!r} failed: {done.stderr[-2000:]}")
            out["runs"][name] = json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[index]
            print(f"  {name}: {out['runs'][name]}", file=sys.stderr, flush=True)  # type: ignore[index]
    return out


def export_fixture(work: Path) -> Path:
    from bert14.commands.build import ExportOptions, export_artifact

    print("exporting the trained fixture ...", file=sys.stderr, flush=True)
    out = work / "fixture"
    export_artifact(ExportOptions(model_dir=require(TRAINED_MODEL), out_dir=out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--default", required=True, help="the default BERT-14 artifact (make export)")
    parser.add_argument("--fixture", help="the trained fixture's artifact (default: exported into a temp dir)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of the fixture (full size: 3)")
    parser.add_argument("--json", help="write the report here (docs/results/long_text.json)")
    parser.add_argument(
        "--only-memory", action="store_true", help="re-measure the memory part alone into the --json report"
    )
    args = parser.parse_args()
    if args.only_memory:
        if not args.json or not Path(args.json).is_file():
            raise SystemExit("--only-memory: expected --json naming an earlier report to update")
        report = json.loads(Path(args.json).read_text(encoding="utf-8"))
        report["memory"] = memory(Path(args.default)) | {"measured": measured()}
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    with tempfile.TemporaryDirectory() as work:
        fixture = Path(args.fixture) if args.fixture else export_fixture(Path(work))
        print("accuracy and cost on the trained fixture ...", file=sys.stderr, flush=True)
        report = {"measured": measured(), "threads": THREADS, "accuracy": accuracy(fixture, args.rounds)}
    print("articles/s at full size ...", file=sys.stderr, flush=True)
    report["speed"] = speed(Path(args.default), max(args.rounds - 2, 1))
    print("peak memory of one 100,000-token text ...", file=sys.stderr, flush=True)
    report["memory"] = memory(Path(args.default))
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
