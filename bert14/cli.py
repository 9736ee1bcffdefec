"""The `bert14` command: parse arguments, call one library function, print its report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bert14.errors import Bert14Error, InputError


def _export(args: argparse.Namespace) -> int:
    from bert14.export.pipeline import ExportOptions, export_artifact

    options = ExportOptions(
        model_dir=Path(args.model) if args.model else None,
        out_dir=Path(args.out),
        exporter=args.exporter,
        attn=args.attn,
        opset=args.opset,
        seed=args.seed,
        optimize=not args.no_optimize,
    )
    source = f"checkpoint {options.model_dir}" if options.model_dir else f"default BERT-14 (seed {options.seed})"
    print(f"exporting {source} with the {options.exporter} exporter, {options.attn} attention, opset {options.opset}")
    report = export_artifact(options)
    print(report.tables())
    if "fusions" in report.manifest:
        counts = ", ".join(f"{op} {n}" for op, n in report.manifest["fusions"]["counts"].items())
        print(f"fused: {counts}")
    files = ", ".join(sorted(report.manifest["files"]))
    print(f"wrote {report.out_dir}/ ({files}, manifest.json) in {report.seconds:.1f} s")
    return 0


def _optimize(args: argparse.Namespace) -> int:
    from bert14.optimize.pipeline import OptimizeOptions, optimize_file

    source, target = Path(args.model), Path(args.output)
    if not source.is_file():
        raise InputError(f"{source}: expected an ONNX model file, found none")
    options = OptimizeOptions(args.num_layers, args.num_heads, debug=args.debug, gate=not args.no_gate)
    report = optimize_file(source, target, options)
    for op, count in report.counts.items():
        print(f"{op:<26} {count:>4} (expected {report.expected[op]})")
    leftovers = {op: n for op, n in report.leftovers.items() if n}
    print(f"left unfused: {leftovers or 'none'}")
    if args.debug:
        for family, reasons in report.reasons.items():
            for reason in reasons:
                print(f"  {family}: {reason}")
        print(report.trace)
    print(f"wrote {target} in {sum(report.seconds.values()):.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bert14", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="export a BERT classifier to a validated ONNX artifact")
    export.add_argument("--model", help="local Hugging Face checkpoint directory (default: BERT-14, seeded weights)")
    export.add_argument("--out", default="artifacts/bert14", help="artifact directory (default: %(default)s)")
    export.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo")
    export.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa", help="HF attention implementation")
    export.add_argument("--opset", type=int, default=18)
    export.add_argument("--seed", type=int, default=14, help="weight seed of the default model")
    export.add_argument("--no-optimize", action="store_true", help="write model.onnx only (no fused/fp16 variants)")
    export.set_defaults(func=_export)

    optimize = commands.add_parser("optimize", help="fuse a BERT ONNX graph into ONNX Runtime's transformer ops")
    optimize.add_argument("model", help="fp32 ONNX file from any exporter (TorchScript or dynamo, opset 14+)")
    optimize.add_argument("output", help="where to write the fused model")
    optimize.add_argument("--num-layers", type=int, help="expected encoder layers (default: count the Softmaxes)")
    optimize.add_argument("--num-heads", type=int, help="attention heads, if the graph's shapes do not show them")
    optimize.add_argument("--debug", action="store_true", help="explain every pattern that did not match")
    optimize.add_argument("--no-gate", action="store_true", help="write the model even when fusion falls short")
    optimize.set_defaults(func=_optimize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Bert14Error as exc:
        print(f"bert14 {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"bert14 {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
