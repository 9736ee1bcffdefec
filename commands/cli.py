"""The `bert14` command: parse arguments, call one library function, print its report."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from bert14 import progress
from bert14.errors import Bert14Error, InputError, Terminated
from bert14.options import add_flags, values

# LoadOptions a batch job sets itself: its workers run on the CPU with --threads-per-worker threads.
BATCH_FIXED = ("provider", "threads", "inter_op_threads", "cuda_graph")
# LoadOptions a Triton repository carries (its postprocess model's labels); Triton runs the rest.
REPO_HONOURS = ("threshold", "label_thresholds", "long_text")  # long_text: refused unless truncate


def _export(args: argparse.Namespace) -> int:
    from bert14.commands.build import ExportOptions, export_artifact
    from bert14.quantize.dynamic import DynamicOptions
    from bert14.quantize.fallback import FallbackOptions
    from bert14.quantize.openvino import OpenVinoOptions
    from bert14.quantize.static import StaticOptions

    options = ExportOptions(
        model_dir=Path(args.model) if args.model else None,
        out_dir=Path(args.out),
        exporter=args.exporter,
        attn=args.attn,
        opset=args.opset,
        seed=args.seed,
        optimize=not args.no_optimize,
        quantize=not args.no_int8,
        fp16_seqlen=not args.no_fp16_seqlen,
        int8=DynamicOptions(
            per_channel=not args.int8_per_tensor,
            activations=args.int8_activations,
            keep_embedding_fp32=args.int8_embedding == "fp32",
        ),
        int8_eval_texts=Path(args.int8_eval_texts) if args.int8_eval_texts else None,
        int8_static=(
            StaticOptions(args.int8_calibrate, not args.int8_per_tensor) if args.int8_method == "static" else None
        ),
        int8_calibration_texts=Path(args.int8_calibration) if args.int8_calibration else None,
        openvino=not args.no_openvino,
        openvino_int8=OpenVinoOptions(smooth_quant=not args.openvino_no_smooth_quant),
        calibration_texts=Path(args.calibration) if args.calibration else None,
        int8_fallback=(
            FallbackOptions(args.int8_target_agreement, args.int8_max_prob_diff)
            if args.int8_target_agreement is not None or args.int8_max_prob_diff is not None
            else None
        ),
    )
    source = f"checkpoint {options.model_dir}" if options.model_dir else f"default BERT-14 (seed {options.seed})"
    print(f"exporting {source} with the {options.exporter} exporter, {options.attn} attention, opset {options.opset}")
    with progress.reporting(progress.for_terminal(args.quiet)):
        report = export_artifact(options)
    print(report.tables())
    if "fusions" in report.manifest.raw:
        counts = ", ".join(f"{op} {n}" for op, n in report.manifest.raw["fusions"]["counts"].items())
        print(f"fused: {counts}")
    for why in (report.manifest.raw.get("skipped") or {}).values():
        print(f"note: {why}")
    files = ", ".join(sorted(report.manifest.files))
    print(f"wrote {report.out_dir}/ ({files}, manifest.json) in {report.seconds:.1f} s")
    return 0


def _optimize(args: argparse.Namespace) -> int:
    from bert14.optimize.pipeline import OptimizeOptions, optimize_file

    source, target = Path(args.model), Path(args.output)
    options = OptimizeOptions(
        args.num_layers, args.num_heads, debug=args.debug, gate=not args.no_gate, skip=frozenset(args.skip),
        include=frozenset(args.include),
    )
    report = optimize_file(source, target, options)
    for op, count in report.counts.items():
        want = report.expected.get(op)
        note = "not expected: a pass it needs was skipped" if want is None else f"expected {want}"
        print(f"{op:<26} {count:>4} ({note})")
    leftovers = {op: n for op, n in report.leftovers.items() if n}
    print(f"left unfused: {leftovers or 'none'}")
    if report.skipped:
        print(f"skipped: {', '.join(report.skipped)}")
    if args.debug:
        for family, reasons in report.reasons.items():
            for reason in reasons:
                print(f"  {family}: {reason}")
    print(f"wrote {target} in {sum(report.seconds.values()):.1f} s")
    return 0


def _load_options(args: argparse.Namespace, skip: Sequence[str] = ()):
    """LoadOptions from the flags; a long-text setting of a strategy the command does not use is refused
    (serve keeps them all: they are the defaults of a request that chooses that strategy)."""
    from bert14.runtime import LoadOptions

    if getattr(args, "command", None) != "serve":
        unused_long_text_flags(args)
    return LoadOptions(**values(LoadOptions, args, skip=skip))


# LongText's settings and the strategy each belongs to, by the flag's field name.
_LONG_TEXT_SETTINGS = {"head_tokens": "head_tail", "stride": "windows", "pool": "windows", "max_windows": "windows"}


def unused_long_text_flags(args: argparse.Namespace) -> None:
    """InputError for a long-text flag given without its strategy (`--stride 5` and no --long-text windows),
    which would otherwise be ignored silently."""
    from bert14.long_text import LongText

    # predict, batch: the strategy flag of LoadOptions.long_text (dest "strategy"); check: its own --long-text
    strategy = getattr(args, "strategy", None) or getattr(args, "long_text", None) or LongText().strategy
    for name, owner in _LONG_TEXT_SETTINGS.items():
        value = getattr(args, name, None)
        if value is not None and value != getattr(LongText(), name) and strategy != owner:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} applies to --long-text {owner}, not {strategy}; add --long-text {owner} or "
                             f"leave {flag} out")  # fmt: skip


def _load_classifier(args: argparse.Namespace):
    from bert14.runtime import Classifier

    return Classifier.load(args.artifact, _load_options(args))


STDIN = "-"


def _read_lines(path: Path, chunk: int):
    """Lines of a UTF-8 file (or standard input, for "-") in chunks; invalid UTF-8 is an error that
    names the line."""
    if str(path) != STDIN and not path.is_file():
        raise InputError(f"{path}: expected a text file with one text a line, found none")
    lines: list[str] = []
    with sys.stdin.buffer if str(path) == STDIN else path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                lines.append(raw.rstrip(b"\r\n").decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{number}: expected UTF-8 text, found invalid bytes ({exc.reason})") from exc
            if len(lines) == chunk:
                yield lines
                lines = []
    if lines:
        yield lines


def _predict(args: argparse.Namespace) -> int:
    import json

    if not args.texts and not args.file:
        raise InputError("predict: expected texts as arguments or --file FILE")
    if args.file and args.file != STDIN and not Path(args.file).is_file():  # before any text is answered
        raise InputError(f"{args.file}: expected a text file with one text a line (--file), found none")
    clf = _load_classifier(args)
    out = sys.stdout
    if args.texts:
        for text, p in zip(args.texts, clf.predict(args.texts), strict=True):
            out.write(json.dumps({"text": text, **p.to_dict()}, ensure_ascii=False) + "\n")
    if args.file:
        path = Path(args.file)
        total = sum(1 for _ in path.open("rb")) if args.file != STDIN and path.is_file() else 0
        done = 0
        report = progress.for_terminal(args.quiet)
        with progress.reporting(report):
            progress.stage(f"classifying {total or 'the'} lines of {'standard input' if args.file == STDIN else path}")
            for lines in _read_lines(path, 1024):
                for text, p in zip(lines, clf.predict(lines), strict=True):
                    out.write(json.dumps({"text": text, **p.to_dict()}, ensure_ascii=False) + "\n")
                done += len(lines)
                progress.step(done, max(total, done))
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise InputError("serve: the HTTP server needs the serve extra (pip install -r requirements/serve.txt)") \
            from exc
    from bert14.runtime.listener import api_key_from, serve
    from bert14.runtime.server_options import ServerOptions

    # Checked before the model loads: a typo in a port should not cost a load.
    options = ServerOptions(**values(ServerOptions, args), api_key=api_key_from(args.api_key))
    if args.replicas is not None:
        return _serve_replicas(args, options)
    clf = _load_classifier(args)
    serve(clf, options, announce=lambda line: print(line, flush=True))
    return 0


def _serve_replicas(args: argparse.Namespace, options) -> int:  # noqa: ANN001
    try:
        from ray import serve  # noqa: F401
    except ImportError as exc:
        raise InputError("serve --replicas: runs on Ray Serve, which needs the ray extra (pip install -r "
                         "requirements/ray.txt)") from exc  # fmt: skip
    from bert14.scale.replicas import ReplicaOptions, serve_replicas

    replicas = ReplicaOptions(
        replicas=args.replicas,
        threads_per_replica=args.threads_per_replica,
        max_ongoing_requests=args.max_ongoing_requests,
        max_queued_requests=args.max_queued_requests,
        address=args.address,
    )
    # --threads is one process's; each replica gets --threads-per-replica
    serve_replicas(
        Path(args.artifact), _load_options(args), options, replicas, announce=lambda line: print(line, flush=True)
    )
    return 0


def _batch(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise InputError("batch: classifying on Ray Data needs the ray extra (pip install -r requirements/ray.txt)") \
            from exc
    from bert14.scale import BatchOptions, run_batch

    options = BatchOptions(
        artifact=Path(args.artifact),
        input=args.input,
        output=Path(args.output),
        format=args.format,
        text_column=args.text_column,
        pair_column=args.pair_column,
        id_column=args.id_column,
        output_format=args.output_format,
        load=_load_options(args, skip=BATCH_FIXED),
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        probs=args.probs,
        address=args.address,
        progress=not args.quiet,
    )
    print(run_batch(options).summary())
    return 0


def _triton_repo(args: argparse.Namespace) -> int:
    from bert14.runtime import LoadOptions
    from bert14.scale.triton import RepoOptions, write_repo

    options = RepoOptions(**values(RepoOptions, args), load=LoadOptions(**values(LoadOptions, args, only=REPO_HONOURS)))
    files = write_repo(Path(args.artifact), Path(args.out), options)
    print(f"wrote {args.out}/ ({len(files)} files): ensemble {options.name!r} = tokenize -> model -> postprocess")
    print(f"run it: tritonserver --model-repository {Path(args.out).resolve()}  (NVIDIA's container; see README)")
    return 0


def _runtime_flags(parser: argparse.ArgumentParser) -> None:
    from bert14.runtime import LoadOptions

    parser.add_argument("artifact", help="artifact directory written by `bert14 export`")
    add_flags(parser, LoadOptions)


def _check(args: argparse.Namespace) -> int:
    import json

    from bert14.check.artifact import check_artifact, failures, format_report
    from bert14.check.cases import SAMPLE_TEXTS
    from bert14.errors import ParityError
    from bert14.long_text import LongText

    unused_long_text_flags(args)
    long_text = None
    if args.long_text is not None:  # checked before minutes of work
        long_text = LongText(strategy=args.long_text, **values(LongText, args, skip=("strategy",)))
        if args.provider != "cpu":
            raise InputError("check --long-text: runs the CPU engines; drop --provider cuda")
    texts = None
    if args.texts:
        texts = [line for lines in _read_lines(Path(args.texts), 1 << 30) for line in lines]
    model_dir = Path(args.model) if args.model else None
    long_report = None
    with progress.reporting(progress.for_terminal(args.quiet)):
        reports = check_artifact(Path(args.artifact), texts, model_dir, args.provider)
        if long_text is not None:
            from bert14.check.long_text import check_long_text

            long_report = check_long_text(Path(args.artifact), texts or SAMPLE_TEXTS, long_text, model_dir)
    if args.json:
        print(json.dumps(reports | ({"long_text": long_report} if long_report else {}), indent=2, ensure_ascii=False))
    else:
        print(format_report(reports))
    problems = failures(reports)
    if long_report is not None:
        from bert14.check.long_text import format_long_text, long_text_failures

        if not args.json:
            print(format_long_text(long_report))
        problems += long_text_failures(long_report)
    if problems:
        raise ParityError("check failed: " + "; ".join(problems))
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error in one line on stderr (exit 2) rather than the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from bert14.long_text import LongText
    from bert14.runtime import LoadOptions

    parser = OneLineParser(prog="bert14", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    export = commands.add_parser("export", help="export a BERT classifier to a validated ONNX artifact")
    export.add_argument("--model", help="local Hugging Face checkpoint directory (default: BERT-14, seeded weights)")
    export.add_argument("--out", default="artifacts/bert14", help="artifact directory (default: %(default)s)")
    export.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo")
    export.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa", help="HF attention implementation")
    export.add_argument("--opset", type=int, default=18)
    export.add_argument("--seed", type=int, default=14, help="weight seed of the default model")
    export.add_argument("--no-optimize", action="store_true", help="write model.onnx only (no fused/fp16/int8)")
    export.add_argument("--no-int8", action="store_true", help="skip model.int8.onnx (e.g. a GPU-only deployment)")
    export.add_argument(
        "--no-fp16-seqlen", action="store_true", help="skip model.fp16.seqlen.onnx (the CUDA runtime's fast path)"
    )
    export.add_argument(
        "--int8-per-tensor",
        action="store_true",
        help="one int8 scale per weight tensor (default: one per output channel, more accurate at the same speed)",
    )
    export.add_argument(
        "--int8-activations",
        choices=("per_token", "per_tensor"),  # quantize/dynamic.py's ACTIVATIONS; the parser stays import-light
        default="per_token",
        help="dynamic: per_token (default) scales each token row alone, so a text's scores do not depend on its "
        "batch; per_tensor scales the whole batch at once: faster, but scores move with the neighbours",
    )
    export.add_argument(
        "--int8-embedding",
        choices=("fp32", "int8"),
        default="fp32",
        help="dynamic: the embedding tables in fp32 (default: the most accurate) or int8 (a smaller file)",
    )
    export.add_argument("--int8-method", choices=("dynamic", "static"), default="dynamic")
    export.add_argument("--int8-calibration", help="static: UTF-8 file of real texts to calibrate on")
    export.add_argument(
        "--calibration",
        help="OpenVINO INT8: UTF-8 file of the model's kind of text, one a line, to calibrate on "
        "(default: a seeded sample of random token sequences)",
    )
    export.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO INT8 model (model.int8.ov.xml)")
    export.add_argument(
        "--openvino-no-smooth-quant",
        action="store_true",
        help="OpenVINO INT8 without SmoothQuant (moved logits more on the trained fixture; for comparison)",
    )
    export.add_argument("--int8-calibrate", choices=("minmax", "percentile", "entropy"), default="minmax")
    export.add_argument(
        "--int8-target-agreement",
        type=float,
        help="keep the most sensitive layers fp32 until INT8 labels agree with PyTorch this often (e.g. 0.999)",
    )
    export.add_argument("--int8-max-prob-diff", type=float, help="also require max |probability diff| <= this")
    export.add_argument("--int8-eval-texts", help="UTF-8 file, one text a line, to measure the agreement on")
    export.add_argument("--quiet", action="store_true", help="no stage lines or progress bar on stderr")
    export.set_defaults(func=_export)

    optimize = commands.add_parser("optimize", help="fuse a BERT ONNX graph into ONNX Runtime's transformer ops")
    optimize.add_argument("model", help="fp32 ONNX file from any exporter (TorchScript or dynamo, opset 14+)")
    optimize.add_argument("output", help="where to write the fused model")
    optimize.add_argument("--num-layers", type=int, help="expected encoder layers (default: count the Softmaxes)")
    optimize.add_argument("--num-heads", type=int, help="attention heads, if the graph's shapes do not show them")
    optimize.add_argument(
        "--debug", action="store_true", help="print every pass's refusals (onnxscript's rules' closest misses too)"
    )
    optimize.add_argument(
        "--skip", action="append", default=[], metavar="PASS",
        help="switch a fusion pass off (repeatable): layer_norm, embed_layer_norm, attention, skip_layer_norm, "
        "gelu, first_token; the gate then expects what the others make",
    )  # fmt: skip
    optimize.add_argument(
        "--with", dest="include", action="append", default=[], metavar="PASS",
        help="switch an opt-in pass on (repeatable): mask_index (Attention reads sequence lengths; right padding only)",
    )  # fmt: skip
    optimize.add_argument("--no-gate", action="store_true", help="write the model even when fusion falls short")
    optimize.set_defaults(func=_optimize)

    check = commands.add_parser("check", help="prove every artifact against the PyTorch source")
    check.add_argument("artifact", help="artifact directory written by `bert14 export`")
    check.add_argument("--texts", help="UTF-8 file, one text a line (default: a built-in sample)")
    check.add_argument("--json", action="store_true", help="machine-readable report, one key per artifact")
    check.add_argument(
        "--model", help="the source checkpoint's directory, if it moved since the export (its files must match)"
    )
    check.add_argument(
        "--provider",
        choices=("cpu", "cuda"),
        default="cpu",
        help="run the artifacts on ONNX Runtime's CPU or CUDA provider (onnxruntime-gpu), against PyTorch there",
    )
    check.add_argument(
        "--long-text",
        metavar="STRATEGY",
        help="also check a long-text strategy (truncate, head_tail, windows) on the CPU engines: the runtime's "
        "token selection and scores against PyTorch fed transformers' selection",
    )
    add_flags(check, LongText, skip=("strategy",))
    check.add_argument("--quiet", action="store_true", help="no stage lines or progress bar on stderr")
    check.set_defaults(func=_check)

    predict = commands.add_parser(
        "predict",
        help="classify texts, one JSON line each",
        description="Exit codes: 0 done, 2 bad input (texts, file, options), 6 artifact missing or corrupt.",
    )
    _runtime_flags(predict)
    predict.add_argument("texts", nargs="*", help="texts to classify")
    predict.add_argument("--file", help="UTF-8 file, one text a line ('-': standard input)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    predict.set_defaults(func=_predict)

    batch = commands.add_parser(
        "batch",
        help="classify a corpus of files on Ray Data (needs the ray extra), every row exactly once",
        description="Exit codes: 0 done, 2 bad input or options, 6 artifact missing or corrupt, 9 the job failed "
        "(nothing published), 10 a file could not be read or written.",
    )
    batch.add_argument("artifact", help="artifact directory written by `bert14 export`")
    batch.add_argument("--input", required=True, help="a file, a directory of files, or a glob ('news/*.jsonl')")
    batch.add_argument(
        "--output", required=True, help="directory for the part files (absent, empty or an earlier output)"
    )
    batch.add_argument(
        "--format", choices=("txt", "jsonl", "csv", "parquet"), help="input format (default: from the suffix)"
    )
    batch.add_argument("--text-column", default="text", help="column of texts (jsonl, csv, parquet)")
    batch.add_argument("--pair-column", help="column of second segments, for sentence-pair models")
    batch.add_argument("--id-column", help="column of unique row ids (default: 'id' if present, else row numbers)")
    batch.add_argument("--output-format", choices=("parquet", "jsonl"), default="parquet")
    add_flags(batch, LoadOptions, skip=BATCH_FIXED)
    batch.add_argument("--workers", type=int, help="Ray actors, each loading the model once (default: see README)")
    batch.add_argument("--threads-per-worker", type=int, help="CPUs each actor reserves = ONNX Runtime threads")
    batch.add_argument("--probs", action="store_true", help="add every label's score (a probs column)")
    batch.add_argument(
        "--address",
        help="an existing Ray cluster: 'auto' or ray://HOST:PORT (default: a local cluster on this machine)",
    )
    batch.add_argument("--quiet", action="store_true", help="no progress bars")
    batch.set_defaults(func=_batch)

    triton = commands.add_parser(
        "triton-repo",
        help="write a Triton Inference Server model repository for the artifact",
        description="Exit codes: 0 done, 2 bad input (a model directory in OUT that is not bert14's, options), "
        "6 artifact missing or corrupt.",
    )
    triton.add_argument("artifact", help="artifact directory written by `bert14 export`")
    triton.add_argument("out", help="model repository directory (new, or one holding other models)")
    from bert14.scale.triton import RepoOptions

    add_flags(triton, RepoOptions)  # --device, --max-batch, ... --name: from the dataclass (scale/triton.py)
    add_flags(triton, LoadOptions, only=REPO_HONOURS)
    triton.set_defaults(func=_triton_repo)

    serve = commands.add_parser("serve", help="serve the classifier over HTTP (needs the serve extra)")
    _runtime_flags(serve)
    from bert14.runtime.server_options import ServerOptions

    add_flags(serve, ServerOptions)  # --host, --port, --max-texts, ... --ui: from the dataclass (runtime/server.py)
    serve.add_argument(
        "--api-key", help="require Authorization: Bearer KEY on every route but /healthz (or set BERT14_API_KEY)"
    )
    serve.add_argument("--replicas", type=int, help="run N replicas on Ray Serve behind one port (needs the ray extra)")
    serve.add_argument("--threads-per-replica", type=int, default=1, help="with --replicas: CPUs and threads each")
    serve.add_argument(
        "--max-ongoing-requests", type=int, default=128, help="with --replicas: requests a replica holds at once"
    )
    serve.add_argument(
        "--max-queued-requests", type=int, default=512, help="with --replicas: requests waiting beyond it get 503"
    )
    serve.add_argument("--address", help="with --replicas: an existing Ray cluster ('auto', ray://HOST:PORT)")
    serve.set_defaults(func=_serve)
    parser._bert14_commands = dict(commands.choices)  # type: ignore[attr-defined]
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options may come before or after positional arguments (`predict ART "湖人" --threads 2`), and
    `--` ends the options, so a text may start with '-'. argparse's intermixed parsing does both,
    but not through subparsers: the command's own parser parses what follows the command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands: dict[str, argparse.ArgumentParser] = parser._bert14_commands  # type: ignore[attr-defined]
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)  # --help, or argparse's one-line error and exit 2
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


IO_ERROR = 10  # a file could not be read or written (disk full, permissions): README's exit codes


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except Bert14Error as exc:
        print(f"bert14 {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"bert14 {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Terminated:
        print(f"bert14 {args.command}: terminated (SIGTERM); nothing was written", file=sys.stderr)
        return Terminated.exit_code
    except BrokenPipeError:
        # The reader went away (`| head -1`): end quietly, as Unix tools do, and keep Python from
        # complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:  # the disk is full, a file vanished, a permission: the machine, not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"bert14 {args.command}: error: {where}{exc.strerror or exc}; nothing was written", file=sys.stderr)
        return IO_ERROR
    except Exception as exc:  # a bug, not the user's input: still one line, and how to see more
        if os.environ.get("BERT14_TRACEBACK"):
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"bert14 {args.command}: internal error: {type(exc).__name__}: {detail} "
            "(set BERT14_TRACEBACK=1 to see where; please report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
