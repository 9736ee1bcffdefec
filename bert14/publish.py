"""Where `bert14 export` (and `bert14 batch`) write: a staging directory inside OUT, published file
by file. A `Layout` says what OUT holds: the artifact (`ARTIFACT`) or a batch job's output files.

    OUT/                              a directory the user owns (it may be a mount point)
      notes.txt, eval/                the user's: never touched
      model.onnx, ..., manifest.json  ours: listed in OUT's bert14 manifest
      .bert14-stage-<pid>-<rand>/     the export being built (with a .bert14-stage marker)
      .bert14-publish.json            names being moved in, while a publish is under way

Rules, so that export never loses what it did not write:
- OUT must be absent, empty, or hold a bert14 artifact (its manifest carries bert14's own marker).
  Any other non-empty OUT is refused before the work starts.
- Only files the old manifest lists (and bert14 could have written) are replaced or removed; a
  file with an artifact's name that the manifest does not list is the user's, and is refused.
- The stage lives inside OUT, so publishing is a rename within one filesystem: it works when OUT
  is a mount point (a container volume), where renaming a directory over OUT fails with EBUSY.
- The new manifest is moved in last. A publish cut short leaves .bert14-publish.json, so the next
  export still knows which files are its own.
- A failed or interrupted export removes its stage, and OUT itself if the export created it. A
  stage left by a killed process (its pid gone) is removed by the next export to the same OUT.
- Nothing outside OUT is ever removed: a `.OUT.partial-*` directory beside OUT (where versions
  before 2026-11-27 staged) may be anyone's, whatever it holds, so it is left for its owner.
- One export at a time per OUT: an advisory lock on the directory itself.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bert14.artifact import ARTIFACT_FILE_NAMES, MANIFEST_NAME, is_bert14_manifest
from bert14.errors import InputError

STAGE_PREFIX = ".bert14-stage-"
STAGE_MARKER = ".bert14-stage"
JOURNAL_NAME = ".bert14-publish.json"


@dataclass(frozen=True)
class Layout:
    """What a directory bert14 publishes into holds."""

    what: str  # "artifact": for messages
    job: str  # "export": for messages
    option: str  # "--out": the option that names the directory
    manifest: str  # the file, moved in last, that lists the others
    is_ours: Callable[[object], bool]  # recognises a manifest this product wrote
    writes: Callable[[str], bool]  # names this product writes (and only these it may replace)


ARTIFACT = Layout("artifact", "export", "--out", MANIFEST_NAME, is_bert14_manifest, ARTIFACT_FILE_NAMES.__contains__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _is_stage(entry: Path) -> bool:
    return entry.name.startswith(STAGE_PREFIX) and (entry / STAGE_MARKER).is_file()


def _stale_stages(out_dir: Path) -> list[Path]:
    """Stages of bert14 exports whose process is gone (killed, machine rebooted)."""
    stale = []
    for entry in out_dir.iterdir():
        if not _is_stage(entry):
            continue
        pid = entry.name[len(STAGE_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
            stale.append(entry)
    return stale


def _journal(out_dir: Path, layout: Layout) -> set[str]:
    path = out_dir / JOURNAL_NAME
    if not path.is_file():
        return set()
    try:
        names = json.loads(path.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in names if isinstance(name, str) and layout.writes(name)}


def owned_files(out_dir: Path, layout: Layout = ARTIFACT) -> set[str] | None:
    """Names in OUT that an earlier bert14 run wrote; None when OUT holds nothing of bert14's."""
    path = out_dir / layout.manifest
    journal = _journal(out_dir, layout)
    manifest = None
    if path.is_file():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = None
    if not layout.is_ours(manifest):
        return journal | {JOURNAL_NAME} if journal else None
    listed = {name for name in manifest["files"] if layout.writes(name)}  # type: ignore[index]
    return listed | journal | {layout.manifest, JOURNAL_NAME}


def _foreign(out_dir: Path, owned: set[str], stale: list[Path], layout: Layout) -> list[str]:
    """Entries of OUT that are not ours but carry a name we write (they would be overwritten)."""
    skip = owned | {p.name for p in stale}
    return sorted(e.name for e in out_dir.iterdir() if layout.writes(e.name) and e.name not in skip)


def preflight(out_dir: Path, layout: Layout = ARTIFACT) -> None:
    """Refuse, before any work, an OUT that we could only fill by overwriting what is not our own."""
    out_dir = Path(out_dir)
    what, option = layout.what, layout.option
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: expected a directory for the {what}, found a file; choose another {option}")
    if not out_dir.is_dir():
        return
    stale = _stale_stages(out_dir)
    entries = [e for e in out_dir.iterdir() if e not in stale]
    if not entries:
        return
    if any(_is_stage(e) for e in entries):  # a live process's stage: it is writing (a new OUT has no manifest yet)
        raise _busy(out_dir, layout)
    owned = owned_files(out_dir, layout)
    if owned is None:
        shown = ", ".join(sorted(e.name for e in entries)[:5])
        raise InputError(
            f"{out_dir}: expected an empty directory or an earlier bert14 {what}, found other files ({shown}) "
            f"and no bert14 {layout.manifest}; choose another {option} "
            f"({layout.job} never deletes what it did not write)"
        )
    clash = _foreign(out_dir, owned, stale, layout)
    if clash:
        raise InputError(
            f"{out_dir}: {', '.join(clash)} would be overwritten, but the {what}'s {layout.manifest} does not list "
            f"them (they are not bert14's); move them away or choose another {option}"
        )


def _busy(out_dir: Path, layout: Layout) -> InputError:
    return InputError(
        f"{out_dir}: another bert14 {layout.job} is writing this directory; wait for it or choose another "
        f"{layout.option}"
    )


@contextmanager
def _locked(out_dir: Path, layout: Layout) -> Iterator[None]:
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(out_dir, layout) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _writable_error(out_dir: Path, exc: OSError, layout: Layout) -> InputError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return InputError(f"{out_dir}: cannot write the {layout.what} there ({reason}); choose a writable {layout.option}")


@contextmanager
def staging(out_dir: Path, layout: Layout = ARTIFACT) -> Iterator[Path]:
    """A fresh stage inside `out_dir`; on success its files are published into `out_dir`, on any
    failure (an exception, Ctrl-C, SIGTERM turned into an exception by the CLI) it vanishes."""
    out_dir = Path(out_dir)
    preflight(out_dir, layout)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _writable_error(out_dir, exc, layout) from exc
    try:
        with _locked(out_dir, layout):
            for stale in _stale_stages(out_dir):
                shutil.rmtree(stale, ignore_errors=True)
            try:
                stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=out_dir))
                (stage / STAGE_MARKER).write_text(f"a bert14 {layout.job} in progress\n", encoding="utf-8")
            except OSError as exc:
                raise _writable_error(out_dir, exc, layout) from exc
            try:
                yield stage
                (stage / STAGE_MARKER).unlink()
                _publish(stage, out_dir, layout)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
    except BaseException:
        if created:
            _remove_if_empty(out_dir)
        raise


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            raise


def _publish(stage: Path, out_dir: Path, layout: Layout) -> None:
    """Move the stage's files into OUT: data files first, the manifest last, then remove what the
    old manifest listed and the new one does not."""
    new = sorted(p.name for p in stage.iterdir())
    unknown = sorted(name for name in new if not layout.writes(name))
    if unknown:  # a programming error, not a user's: every name we write is in the contract
        raise RuntimeError(f"{layout.job} staged files outside the {layout.what}'s names: {unknown}")
    owned = owned_files(out_dir, layout) or set()
    ours = {name for name in owned if layout.writes(name)}
    clash = [name for name in _foreign(out_dir, owned, [], layout) if name in new]
    if clash:  # appeared while the job ran
        raise InputError(
            f"{out_dir}: {', '.join(clash)} appeared there during the {layout.job} and are not bert14's; "
            "nothing was replaced"
        )
    journal = out_dir / JOURNAL_NAME
    journal.write_text(json.dumps({"files": sorted(set(new) | ours)}) + "\n", "utf-8")
    for name in new:
        if name != layout.manifest:
            os.replace(stage / name, out_dir / name)
    os.replace(stage / layout.manifest, out_dir / layout.manifest)
    for name in sorted(ours - set(new)):
        (out_dir / name).unlink(missing_ok=True)
    journal.unlink()
