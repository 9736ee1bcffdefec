"""The `bert14` command: parse arguments, call one library function, print its report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bert14.errors import Bert14Error


def _export(args: argparse.Namespace) -> int:
    from bert14.export.pipeline import ExportOptions, export_artifact

    options = ExportOptions(
        model_dir=Path(args.model) if args.model else None,
        out_dir=Path(args.out),
        exporter=args.exporter,
        attn=args.attn,
        opset=args.opset,
        seed=args.seed,
    )
    source = f"checkpoint {options.model_dir}" if options.model_dir else f"default BERT-14 (seed {options.seed})"
    print(f"exporting {source} with the {options.exporter} exporter, {options.attn} attention, opset {options.opset}")
    report = export_artifact(options)
    print(f"validation against PyTorch ({len(report.validation)} cases):")
    print(report.table())
    files = ", ".join(sorted(report.manifest["files"]))
    print(f"wrote {report.out_dir}/ ({files}, manifest.json) in {report.seconds:.1f} s")
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
    export.set_defaults(func=_export)
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
