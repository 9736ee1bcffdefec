"""Options declared once: a dataclass field's metadata is its command-line flag.

    @dataclass(frozen=True)
    class LoadOptions:
        threads: int | None = field(default=None, metadata=flag("intra-op threads", type=int))

    add_flags(parser, LoadOptions)                 # --threads, with its help, choices and default
    LoadOptions(**values(LoadOptions, args))       # the parsed flags back as the dataclass's fields

The flag's name is the field's (`max_batch` -> `--max-batch`) unless `name=` says otherwise; its
default is the field's, so the library and the CLI cannot drift apart. A bool field is a switch:
`--NAME` when it defaults to False, `--no-NAME` when it defaults to True. A field without `flag`
metadata is the library's alone. `repeat=True` collects every occurrence into a list, which
`parse` (when given) turns into the field's value; `parse` also reports a bad item as InputError.
A field whose metadata is `nested()` holds another such dataclass: its flags join the parser's, and
`values` builds it from them (`LoadOptions.long_text` is a `LongText`).
Modelled on transformers' HfArgumentParser, without its magic: only what a field declares.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Collection
from typing import Any

FLAG = "bert14.flag"  # the metadata key
NESTED = "bert14.nested"  # the metadata key of a field that is a dataclass of flags itself


def flag(
    help: str,  # noqa: A002 - argparse's own word for it
    *,
    name: str | None = None,
    type: Callable[[str], Any] | None = None,  # noqa: A002
    choices: Collection[str] | None = None,
    metavar: str | None = None,
    repeat: bool = False,
    parse: Callable[[list[str]], Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """A field's metadata that makes it a flag (see the module's docstring)."""
    spec = {"help": help, "name": name, "type": type, "choices": choices, "metavar": metavar}
    return {FLAG: spec | {"repeat": repeat, "parse": parse}}


def nested() -> dict[str, bool]:
    """A field's metadata that makes its dataclass's flags the parser's too (see the module's docstring)."""
    return {NESTED: True}


def flag_fields(cls: type, only: Collection[str] | None = None, skip: Collection[str] = ()) -> list[dataclasses.Field]:
    """The fields of dataclass `cls` that are flags, `only` those named (in the dataclass's order), minus `skip`."""
    fields = [f for f in dataclasses.fields(cls) if (FLAG in f.metadata or NESTED in f.metadata) and f.name not in skip]
    if only is not None:
        unknown = sorted(set(only) - {f.name for f in fields})
        if unknown:
            raise ValueError(f"{cls.__name__}: {unknown} are not flag fields")
        fields = [f for f in fields if f.name in only]
    return fields


def _option(field: dataclasses.Field) -> str:
    spec = field.metadata[FLAG]
    base = spec["name"] or field.name.replace("_", "-")
    if field.default is True:
        return f"--no-{base}"
    return f"--{base}"


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
) -> None:
    """One argument per flag field of `cls`; its dest is the field's name."""
    for field in flag_fields(cls, only, skip):
        if NESTED in field.metadata:
            add_flags(parser, _nested_class(field))
            continue
        spec = field.metadata[FLAG]
        kwargs: dict[str, Any] = {"dest": field.name, "help": spec["help"]}
        if isinstance(field.default, bool):
            kwargs["action"] = "store_false" if field.default else "store_true"
        elif spec["repeat"]:
            kwargs |= {"action": "append", "default": [], "metavar": spec["metavar"]}
        else:
            default = field.default if field.default is not dataclasses.MISSING else None
            shown = spec["metavar"] or (spec["name"] or field.name).upper().replace("-", "_")
            kwargs |= {"default": default, "metavar": None if spec["choices"] else shown}
            kwargs["type"] = spec["type"] or (type(default) if default is not None else str)
            if spec["choices"] is not None:
                kwargs["choices"] = tuple(spec["choices"])
            if default is not None:
                kwargs["help"] += f" (default: {default})"
        parser.add_argument(_option(field), **kwargs)


def values(
    cls: type, args: argparse.Namespace, only: Collection[str] | None = None, skip: Collection[str] = ()
) -> dict[str, Any]:
    """{field: value} for the flag fields of `cls` that add_flags put on the parser."""
    out = {}
    for field in flag_fields(cls, only, skip):
        if NESTED in field.metadata:
            inner = _nested_class(field)
            out[field.name] = inner(**values(inner, args))
            continue
        value = getattr(args, field.name)
        parse = field.metadata[FLAG]["parse"]
        out[field.name] = parse(value) if parse is not None else value
    return out


def _nested_class(field: dataclasses.Field) -> type:
    """The dataclass a nested() field holds, read from its default (annotations may be strings)."""
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
    return type(default)
