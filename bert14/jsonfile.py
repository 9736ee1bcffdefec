"""Reading the small JSON files of checkpoints and artifacts, with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bert14.errors import Bert14Error


def read_json_object(path: Path, error: type[Bert14Error], what: str) -> dict[str, Any]:
    """The JSON object in `path`, or `error` saying the file is not the `what` expected."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, an integer of 4,300+ digits
        raise error(f"{path}: expected {what} in JSON, could not parse it ({exc})") from exc
    except RecursionError:
        raise error(f"{path}: expected {what} in JSON, found nesting too deep to parse") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected {what} as a JSON object, found {type(raw).__name__}")
    return raw
