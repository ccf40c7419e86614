"""Files written whole or not at all, with the mode a plain write would give them, and never over a file
that is not the run's to replace."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Callable, Dict, Iterable, List

from .errors import UsageError


def plain_mode(path: Path) -> int:
    """The permission bits `open(path, "w")` would leave: an existing file's own, else 0o666 less the umask
    (a temporary file from mkstemp is 0o600, which a renamed-into-place output must not keep)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[IO], None], binary: bool = False, replace: bool = True) -> None:
    """Call `write(file)` on a uniquely named temporary file in `path`'s folder, then move it to `path`: a
    reader sees the old file or the new one, never half of it, and two writers never share a temp name.
    `replace=False` moves it only if `path` does not exist at that moment (FileExistsError otherwise), so
    a file that appeared meanwhile is never lost. The folder must exist."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, plain_mode(path))
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # atomic and exclusive: fails when path exists
            os.unlink(temp)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return "No space left on device" in str(error) or "[Errno 28]" in str(error)


# What every export manifest's name ends with (`export.target.manifest_name`): no report is written over one.
MANIFEST_SUFFIX = ".export.json"


class OutputFiles:
    """The files a command writes (reports, pictures): checked before any work, then written whole.

    Without `force` an output must not exist when the command starts, and one that appears while it works
    (another run, the user) is not replaced: the write refuses and removes what this call wrote. A file
    this run has written already (a progress report rewritten after each part) is its own to replace.
    Every failure is a one-line UsageError (exit 2)."""

    def __init__(self, paths: Iterable[Path], force: bool = False) -> None:
        self.paths = [Path(p) for p in paths if p is not None]
        self.force = force
        self.written: set = set()

    def refuse_inputs(self, inputs: Iterable[Path]) -> None:
        """A one-line UsageError for an output that is one of the command's inputs or inside one (a package
        or bundle folder): --force replaces outputs, never what the command reads."""
        inputs = [Path(p).resolve() for p in inputs]
        for path in self.paths:
            resolved = path.resolve()
            for read in inputs:
                if resolved == read or read in resolved.parents:
                    raise UsageError(f"{path} is {read.name}, which this command reads; choose another name")

    def check(self) -> None:
        for path in self.paths:
            if path.name.endswith(MANIFEST_SUFFIX):
                raise UsageError(
                    f"{path} would be named like an export manifest (*{MANIFEST_SUFFIX}); reports never take "
                    "that name: choose another"
                )
            if path.is_dir():
                raise UsageError(f"cannot write {path} (it is a folder); pass a file path")
            folder = path.parent if str(path.parent) else Path(".")
            if not folder.is_dir():
                raise UsageError(f"folder {folder} does not exist; create it or choose another output")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise UsageError(f"cannot write to {folder} (permission denied); choose a writable folder")
            if path.exists() and not self.force:
                raise UsageError(f"{path} exists; pass --force to replace it or choose another name")
        resolved = [p.resolve() for p in self.paths]
        if len(set(resolved)) < len(resolved):
            raise UsageError("two outputs name the same file; give each its own")

    def write(self, items: Dict[Path, Callable[[IO], None]], binary: Iterable[Path] = ()) -> None:
        """Write every item (path -> write function) or none: on a failure the files this call created are
        removed again."""
        binary = {Path(p) for p in binary}
        created: List[Path] = []
        try:
            for path, write in items.items():
                path = Path(path)
                own = self.force or path in self.written
                existed = path.exists()
                try:
                    atomic_write(path, write, binary=path in binary, replace=own)
                except FileExistsError:
                    raise UsageError(
                        f"{path} appeared while this run was working; it was not replaced and nothing was "
                        "written; pass --force to replace it"
                    ) from None
                except OSError as e:
                    why = "no space left on the disk; free space" if is_disk_full(e) else e.strerror or e
                    raise UsageError(f"cannot write {path} ({why}); nothing was written") from None
                if not existed:
                    created.append(path)
                self.written.add(path)
        except BaseException:
            for path in created:
                path.unlink(missing_ok=True)
                self.written.discard(path)
            raise

    def write_text(self, path: Path, text: str) -> None:
        self.write({Path(path): lambda f: f.write(text)})


def tree_bytes(path: Path) -> int:
    """Size of a file, or of every file under a folder (an .mlpackage)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def remove_abandoned(folder: Path, prefix: str) -> None:
    """Remove `<prefix><pid>-*` folders in `folder` whose process is gone (runs killed before cleaning up)."""
    for path in folder.glob(f"{prefix}*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:  # another user's live process
            pass
