"""Options declared once (bert14/options.py): a field's metadata is its flag on every command that runs it."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import pytest

from bert14.errors import InputError
from bert14.head import parse_label_thresholds
from bert14.options import NESTED, add_flags, flag, flag_fields, nested, values


@dataclass(frozen=True)
class Toy:
    mode: str = field(default="a", metadata=flag("which mode", choices=("a", "b")))
    count: int | None = field(default=None, metadata=flag("how many", type=int))
    rows: int = field(default=32, metadata=flag("rows per run", name="batch-size"))
    quick: bool = field(default=False, metadata=flag("go fast"))
    careful: bool = field(default=True, metadata=flag("skip the checks"))
    named: dict | None = field(
        default=None, metadata=flag("one name", name="name", repeat=True, parse=parse_label_thresholds)
    )
    library_only: int = 7


def _parse(*argv: str) -> Toy:
    parser = argparse.ArgumentParser()
    add_flags(parser, Toy)
    return Toy(**values(Toy, parser.parse_args(list(argv))))


def test_no_flags_give_the_dataclass_defaults() -> None:
    assert _parse() == Toy()


def test_each_kind_of_field_becomes_its_flag() -> None:
    got = _parse("--mode", "b", "--count", "3", "--batch-size", "8", "--quick", "--no-careful",
                 "--name", "体育=0.7", "--name", "a=b=0.2")  # fmt: skip
    assert got == Toy(mode="b", count=3, rows=8, quick=True, careful=False, named={"体育": 0.7, "a=b": 0.2})


def test_a_field_without_flag_metadata_is_not_a_flag() -> None:
    assert "library_only" not in {f.name for f in flag_fields(Toy)}
    with pytest.raises(SystemExit):
        _parse("--library-only", "3")


def test_bad_values_are_refused_with_what_was_expected(capsys) -> None:
    with pytest.raises(SystemExit):
        _parse("--mode", "c")
    assert "invalid choice: 'c'" in capsys.readouterr().err
    with pytest.raises(InputError, match="expected LABEL=SCORE"):
        _parse("--name", "no-equals-sign")


def test_only_and_skip_pick_fields_and_unknown_names_are_a_programming_error() -> None:
    assert [f.name for f in flag_fields(Toy, only=("rows", "mode"))] == ["mode", "rows"]
    assert "quick" not in [f.name for f in flag_fields(Toy, skip=("quick",))]
    with pytest.raises(ValueError, match="not flag fields"):
        flag_fields(Toy, only=("library_only",))


def _dests(cls: type, only=None) -> set[str]:
    """The argparse dests add_flags makes for `cls`: a nested() field's are its dataclass's."""
    out = set()
    for f in flag_fields(cls, only):
        out |= _dests(type(f.default)) if NESTED in f.metadata else {f.name}
    return out


@dataclass(frozen=True)
class Outer:
    toy: Toy = field(default=Toy(), metadata=nested())
    level: int = field(default=1, metadata=flag("a level"))


def test_a_nested_dataclass_field_brings_its_flags_and_is_built_from_them() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, Outer)
    assert values(Outer, parser.parse_args([])) == {"toy": Toy(), "level": 1}
    got = Outer(**values(Outer, parser.parse_args(["--mode", "b", "--level", "3", "--batch-size", "4"])))
    assert got == Outer(Toy(mode="b", rows=4), 3)
    skipped = argparse.ArgumentParser()
    add_flags(skipped, Outer, skip=("toy",))
    assert {a.dest for a in skipped._actions} == {"help", "level"}


def test_the_long_text_flags_build_the_runtime_options_long_text() -> None:
    from bert14.commands.cli import build_parser
    from bert14.long_text import LongText
    from bert14.runtime import LoadOptions

    predict = build_parser()._bert14_commands["predict"]
    args = predict.parse_args(["ART", "--long-text", "windows", "--stride", "128", "--pool", "max"])
    options = LoadOptions(**values(LoadOptions, args))
    assert options.long_text == LongText("windows", stride=128, pool="max")


def test_every_runtime_option_reaches_predict_serve_batch_and_triton_repo_from_one_declaration() -> None:
    """A LoadOptions field with flag metadata is a flag of predict and serve, of batch unless the job
    sets it itself, and of triton-repo when a repository carries it; no command lists them by hand."""
    from bert14.commands.cli import BATCH_FIXED, REPO_HONOURS, build_parser
    from bert14.runtime import LoadOptions

    commands = build_parser()._bert14_commands
    declared = _dests(LoadOptions)
    assert {"precision", "engine", "max_batch", "threshold", "label_thresholds", "stride", "max_windows"} <= declared
    for command, expected in (
        ("predict", declared),
        ("serve", declared),
        ("batch", declared - set(BATCH_FIXED)),
        ("triton-repo", _dests(LoadOptions, only=REPO_HONOURS)),
    ):
        dests = {a.dest for a in commands[command]._actions}
        assert expected <= dests, (command, expected - dests)
    batch = {a.dest for a in commands["batch"]._actions}
    assert not set(BATCH_FIXED) & batch, "a batch job sets its provider and threads itself"
    # No flags at all: exactly the library's defaults.
    args = commands["predict"].parse_args(["ART"])
    assert LoadOptions(**values(LoadOptions, args)) == LoadOptions()
    fields = {f.name: f for f in dataclasses.fields(LoadOptions)}
    assert fields["max_batch"].metadata and not fields["verify"].metadata  # verify stays the library's


def test_load_options_cross_a_process_boundary_as_plain_data_and_back() -> None:
    """Ray Serve replicas get LoadOptions as dataclasses.asdict's plain dict: from_dict restores it whole,
    the nested long_text included (a dict there once failed every replica's start)."""
    from bert14.long_text import LongText
    from bert14.runtime import LoadOptions

    options = LoadOptions(precision="fp32", threads=1, long_text=LongText("windows", stride=128, max_windows=9))
    assert LoadOptions.from_dict(dataclasses.asdict(options)) == options
    # a mapping of LongText's fields is taken as the CLI and the server take it (no longer an error)
    assert LoadOptions(**dataclasses.asdict(options)) == options
    with pytest.raises(InputError, match="long_text: expected a LongText, a strategy's name or a mapping"):
        LoadOptions(long_text=["windows"])  # type: ignore[arg-type]
