"""The project's exceptions. Every message says what was expected, what was found, what to do.

Each class carries the exit code the `bert14` command ends with; README's "Errors and exit codes"
lists them all, with the codes that are not exceptions (usage 2, interrupted 130, SIGTERM 143,
closed output pipe 141, a file that could not be read or written 10, an unexpected internal
error 1).
"""

from __future__ import annotations

# How much of a value a message echoes: enough to recognise it, never a client's megabyte back at it.
SHOWN_CHARS = 60


def shown(value: object) -> str:
    """`value`'s repr for a message, cut to SHOWN_CHARS."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


class Bert14Error(Exception):
    """Base class: the CLI turns these into a one-line message and a non-zero exit."""

    exit_code = 1


class InputError(Bert14Error):
    """A user-supplied file, directory, argument or text is not what was expected."""

    exit_code = 2


class ExportError(Bert14Error):
    """PyTorch -> ONNX export failed."""

    exit_code = 3


class ParityError(Bert14Error):
    """An artifact does not reproduce the PyTorch source within its tolerance."""

    exit_code = 4


class FusionError(Bert14Error):
    """The optimizer did not fuse a BERT graph into the expected ops."""

    exit_code = 5


class ArtifactError(Bert14Error):
    """An artifact directory is missing files, or its manifest does not match them."""

    exit_code = 6


class QuantizeError(Bert14Error):
    """INT8 quantization could not reach its accuracy target."""

    exit_code = 7


class ServeError(Bert14Error):
    """The HTTP server could not start: the address is in use, or the port cannot be bound."""

    exit_code = 8


class BatchError(Bert14Error):
    """A batch job failed as a whole (a worker died beyond Ray's retries, the cluster went away), or
    its output would not hold every input row exactly once; nothing was published."""

    exit_code = 9


class Terminated(BaseException):
    """SIGTERM arrived (the CLI turns the signal into this). A BaseException, like KeyboardInterrupt,
    so that no `except Exception` swallows it and every cleanup on the way out runs."""

    exit_code = 143
