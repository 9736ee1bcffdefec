"""`bert14 check`: every artifact in a directory against the PyTorch source, on real text and on
adversarial shapes, with disagreements located by sequence-length bucket.

    loader (check/reference.py) -> runner per artifact file (check/runners.py)
        -> comparator (check/compare.py), per row, summarized per length bucket
        -> batch invariance (check/invariance.py): each row alone vs in other batches, as served

The source is the one the manifest records. Inputs: the texts given (default: SAMPLE_TEXTS, which
includes texts longer than 512 tokens), tokenized with the artifact's own tokenizer; plus a seeded
random suite (check/cases.py). `provider="cuda"` runs the artifacts on ONNX Runtime's CUDA
provider against PyTorch on the GPU, with the CUDA tolerances (INT8 is a CPU artifact and is
skipped there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bert14 import progress
from bert14.artifact import MODEL_FILES, OPENVINO_INT8_FILE, read_manifest, verify_files, with_companions
from bert14.check.cases import BUCKETS, RIGHT_PADDING_ONLY, SAMPLE_TEXTS, TRUNCATED, random_cases, text_cases
from bert14.check.compare import THRESHOLDS, Threshold
from bert14.check.invariance import InvarianceReport, check_invariance, rows_of
from bert14.check.reference import TorchReference, source_of
from bert14.check.runners import runner_for
from bert14.errors import ArtifactError
from bert14.head import SOFTMAX, disagreements, scores
from bert14.runtime.engines import openvino as openvino_engine


@dataclass
class Row:
    bucket: str
    reference: np.ndarray  # (C,)
    candidate: np.ndarray  # (C,)


@dataclass
class ArtifactReport:
    name: str
    file: str
    threshold: Threshold
    hash_ok: bool
    function: str = SOFTMAX  # how the logits are read (bert14/head.py): probabilities and answers follow it
    rows: list[Row] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # its files (the .xml's .bin too) whose sha256 differs
    invariance: InvarianceReport = field(default_factory=InvarianceReport)

    def _stats(self, rows: list[Row]) -> dict[str, object]:
        ref = np.stack([r.reference for r in rows]).astype(np.float64)  # (N, C)
        got = np.stack([r.candidate for r in rows]).astype(np.float64)  # (N, C)
        logit = np.abs(ref - got)
        prob = np.abs(scores(ref, self.function) - scores(got, self.function))
        flipped, near_ties = disagreements(ref, got, self.function, self.threshold.logit_atol)  # (N,), (N,)
        bad_flips = int((flipped & ~near_ties).sum()) if self.threshold.near_ties_allowed else int(flipped.sum())
        finite = bool(np.isfinite(got).all())
        return {
            "rows": len(rows),
            "max_abs_logit_diff": float(logit.max()),
            "mean_abs_logit_diff": float(logit.mean()),
            "max_abs_prob_diff": float(prob.max()),
            "top1_agreement": float((~flipped).mean()),
            "near_tie_flips": int(near_ties.sum()),
            "passed": finite and float(logit.max()) <= self.threshold.logit_atol and bad_flips == 0,
        }

    def summary(self) -> dict[str, object]:
        overall = self._stats(self.rows)
        buckets = {}
        for name in [f"{lo}-{hi}" for lo, hi in BUCKETS] + [TRUNCATED]:
            rows = [r for r in self.rows if r.bucket == name]
            if rows:
                buckets[name] = self._stats(rows)
        failed = [name for name, stats in buckets.items() if not stats["passed"]]
        return {
            "file": self.file,
            "threshold": {
                "logit_atol": self.threshold.logit_atol,
                "near_ties_allowed": self.threshold.near_ties_allowed,
            },
            "sha256_matches_manifest": self.hash_ok,
            "changed_files": self.changed,
            "score_function": self.function,
            **overall,
            "parity_passed": bool(overall["passed"]) and self.hash_ok,
            "passed": bool(overall["passed"]) and self.hash_ok and self.invariance.passed,
            "failed_buckets": failed,
            "buckets": buckets,
            "invariance": self.invariance.to_dict(),
        }


def check_artifact(
    directory: Path,
    texts: list[str] | None = None,
    model_dir: Path | None = None,
    provider: str = "cpu",
) -> dict[str, dict[str, object]]:
    """{artifact key: summary} for every artifact present; see ArtifactReport.summary for fields.
    `model_dir`: where the source checkpoint is now, if not where it was exported from."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    # Tokenizer and config files are checked first and whole: a swapped tokenizer.json fails the
    # check here, naming the file, before minutes of comparisons (model files are reported per row).
    model_files = {name for key in MODEL_FILES for name in with_companions(MODEL_FILES[key])}
    verify_files(directory, manifest, sorted(set(manifest.files) - model_files))
    thresholds = THRESHOLDS[provider] if provider in THRESHOLDS else THRESHOLDS["cpu"]
    present = [key for key in MODEL_FILES if manifest.file_of(key) and key in thresholds]
    if OPENVINO_INT8_FILE in manifest.files and "int8_openvino" in present and not openvino_engine.available():
        progress.stage(f"skipping {OPENVINO_INT8_FILE}: {openvino_engine.INSTALL_HINT}")
        present.remove("int8_openvino")
    if not present:
        raise ArtifactError(f"{directory}: the manifest lists no model file to check on {provider}")
    for key in present:  # a missing file cannot be run: say which, before OpenVINO or ONNX Runtime guess
        for name in with_companions(MODEL_FILES[key]):
            if not (directory / name).is_file():
                raise ArtifactError(f"{directory / name}: listed in the manifest but missing (re-run export)")
    runners = {key: runner_for(directory / MODEL_FILES[key], provider) for key in present}
    model_info = manifest.model
    progress.stage("rebuilding the source model")
    reference = TorchReference(source_of(manifest, model_dir).model, "cuda" if provider == "cuda" else "cpu")
    cases = text_cases(
        directory, texts if texts is not None else SAMPLE_TEXTS, model_info.max_tokens, model_info.family
    )
    cases += random_cases(model_info.vocab_size, model_info.type_vocab_size, model_info.max_tokens)
    rows = rows_of([case for case, _ in cases if not case.name.endswith("-left")])
    reports = {}
    for key in present:
        name = MODEL_FILES[key]
        changed = []
        for part in with_companions(name):
            try:
                verify_files(directory, manifest, [part])
            except ArtifactError:
                changed.append(part)
        report = ArtifactReport(key, name, thresholds[key], not changed, reference.function, changed=changed)
        progress.stage(f"checking {name} against PyTorch on {provider} ({len(cases)} batches)")
        for done, (case, buckets) in enumerate(cases, start=1):
            if not (key in RIGHT_PADDING_ONLY and case.name.endswith("-left")):
                got = runners[key](case)
                want = reference(case)
                report.rows += [Row(b, want[i], got[i]) for i, b in enumerate(buckets)]
            progress.step(done, len(cases))
        progress.stage(f"checking {name} alone against batched ({len(rows)} rows, served settings)")
        served = runner_for(directory / name, provider, optimized=True)
        report.invariance = check_invariance(served, rows, reference.function, model_info.max_tokens)
        del served
        reports[key] = report.summary()
    return reports


def format_report(reports: dict[str, dict[str, object]]) -> str:
    lines = [
        f"{'artifact':<11} {'bucket':<10} {'rows':>5} {'max|dlogit|':>12} {'mean|dlogit|':>13} "
        f"{'max|dprob|':>11} {'top-1':>7}  result"
    ]
    for key, summary in reports.items():
        rows = [("all", summary)] + list(summary["buckets"].items())  # type: ignore[union-attr]
        for bucket, stats in rows:
            verdict = "ok" if stats["passed"] else "FAIL"
            lines.append(
                f"{key:<11} {bucket:<10} {stats['rows']:>5} {stats['max_abs_logit_diff']:>12.3e} "
                f"{stats['mean_abs_logit_diff']:>13.3e} {stats['max_abs_prob_diff']:>11.3e} "
                f"{stats['top1_agreement']:>7.4f}  {verdict}"
            )
        if not summary["sha256_matches_manifest"]:
            changed = ", ".join(summary["changed_files"]) or summary["file"]  # type: ignore[arg-type]
            lines.append(f"{key:<11} {changed} does not match the sha256 in manifest.json")
        inv = summary["invariance"]
        lines.append(
            f"{key:<11} batch invariance: {inv['identical']}/{inv['comparisons']} rows bit-identical to alone, "  # type: ignore[index]
            f"{inv['flips']} label flips, max |dlogit| {inv['max_abs_logit_diff']:.3e}, "  # type: ignore[index]
            f"max |dprob| {inv['max_abs_prob_diff']:.3e}  {'ok' if inv['passed'] else 'FAIL'}"  # type: ignore[index]
        )
        threshold = summary["threshold"]
        lines.append(
            f"{'':<11} threshold: max |logit diff| <= {threshold['logit_atol']:g}"  # type: ignore[index]
            + (", near-tie flips allowed" if threshold["near_ties_allowed"] else ", identical labels")  # type: ignore[index]
        )
    return "\n".join(lines)


def failures(reports: dict[str, dict[str, object]]) -> list[str]:
    out = []
    for key, summary in reports.items():
        if summary["passed"]:
            continue
        parts = []
        if not summary["parity_passed"]:
            where = ", ".join(summary["failed_buckets"]) or "overall"  # type: ignore[arg-type]
            changed = ", ".join(summary["changed_files"]) or summary["file"]  # type: ignore[arg-type]
            hashed = "" if summary["sha256_matches_manifest"] else f"; {changed} differs from the manifest's sha256"
            parts.append(f"fails in bucket(s) {where}{hashed}")
        inv = summary["invariance"]
        if not inv["passed"]:  # type: ignore[index]
            flips = f"{inv['flips']} label flips"  # type: ignore[index]
            parts.append(f"batch invariance: {flips} between a row alone and the same row batched")
        out.append(f"{key} ({summary['file']}): " + "; ".join(parts))
    return out
