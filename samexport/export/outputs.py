"""The output folder of one `samexport convert` run: checked before any work, a private work folder
inside it, and the switch to the new set of files at the end.

- Nothing is created before the model is built and the options are known to be good; a run that
  fails or is interrupted removes its work folder and any folder it created.
- The switch happens under an exclusive lock on the folder and re-checks what exists, so of two
  runs that race without --force the second fails and the first one's files stay as they are.
- The switch removes the old manifest first, moves the artifacts (the ones replaced go aside and
  come back if the switch fails) and writes the manifest last: a manifest only ever describes the
  files next to it. The manifest keeps the record of targets this run did not export.
- Work folders and coremltools' temporary packages live in `.samexport-<pid>-*` inside the output
  folder; each holds a lock while its run lives, and a later run removes those whose lock is free
  (their run was killed).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import UsageError
from ..fsutil import tree_bytes

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the re-check at the switch still refuses a lost race
    fcntl = None

# The manifest every convert writes beside its files; readers take these formats (`upgrade_manifest`).
MANIFEST_FORMAT = "samexport.export/2"
READABLE_FORMATS = ("samexport.export/1", MANIFEST_FORMAT)
WORK_PREFIX = ".samexport-"
# A work folder is known by its lock file's name and content, written by the run that made it: a user's
# own `.samexport-*` folder (with a `.lock` in it or not) is never taken for a leftover.
LOCK_NAME = ".samexport-work.lock"
LOCK_MARK = b"samexport convert work folder\n"


def missing_folders(path: Path) -> List[Path]:
    """The folders on the way to `path` (itself included) that do not exist yet, outermost first."""
    missing, path = [], Path(os.path.abspath(path))
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing[::-1]


def nearest_existing(path: Path) -> Path:
    missing = missing_folders(path)
    return missing[0].parent if missing else Path(os.path.abspath(path))


def check_writable_folder(path: Path, what: str) -> None:
    """`path` is a folder, or can be created as one, and can be written, checked without creating it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file; pass a folder")
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise UsageError(f"cannot write to {what} {path} ({existing} is a file); choose a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot write to {what} {path} (permission denied on {existing}); choose a writable folder"
        )


@contextmanager
def folder_lock(folder: Path):
    """An exclusive lock on the folder itself (no lock file is left behind)."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_stale_work_folders(folder: Path) -> List[Path]:
    """Work folders of runs that are gone (their lock is free); a live run's folder is left alone."""
    removed = []
    if fcntl is None:
        return removed
    for work in folder.glob(f"{WORK_PREFIX}*"):
        lock = work / LOCK_NAME
        if not work.is_dir() or lock.is_symlink() or not lock.is_file():
            continue
        try:
            if lock.read_bytes()[: len(LOCK_MARK)] != LOCK_MARK:
                continue
        except OSError:
            continue
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: its run is alive
        finally:
            os.close(fd)
        shutil.rmtree(work, ignore_errors=True)
        removed.append(work)
    return removed


class OutputFolder:
    """One run's output folder: `open()` before exporting, `publish()` to switch, `close()` always."""

    def __init__(self, path: Path, manifest: str, files: List[str], force: bool) -> None:
        self.path = Path(path)
        self.manifest = manifest  # written last
        self.files = list(files)
        self.force = force
        self.work: Optional[Path] = None
        self.created: List[Path] = []
        self._lock_fd: Optional[int] = None
        self._saved_tempdir: Optional[str] = None
        self._tempdir_redirected = False
        self._saved_environ: Dict[str, str] = {}

    def existing_outputs(self) -> List[str]:
        """This run's artifacts that are already in the folder. The manifest is not one: it is shared by the
        targets of one model and variant, and a run that adds a target beside another merges its record
        into it (`merge_manifest`), so adding a target needs no --force; replacing a target's files does."""
        return [n for n in self.files if (self.path / n).exists()]

    # -- before any work --------------------------------------------------------------------------
    def check(self) -> None:
        check_writable_folder(self.path, "--output-dir")
        existing = self.existing_outputs()
        if existing and not self.force:
            raise UsageError(
                f"{self.path / existing[0]} already exists; pass --force to replace it "
                "(or --output-dir elsewhere)"
            )

    def open(self) -> Path:
        """Create the folder (remembering what was created), clear dead runs' leftovers, make the work
        folder and point the temporary files of this process (coremltools') into it."""
        missing = missing_folders(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.created = missing
            remove_stale_work_folders(self.path)
            self.work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=self.path))
            self._lock_fd = os.open(self.work / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
            os.write(self._lock_fd, LOCK_MARK)
            if fcntl is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            (self.work / "tmp").mkdir()
        except OSError as e:
            self.close()
            raise UsageError(
                f"cannot write to --output-dir {self.path} ({e.strerror or e}); choose a writable folder"
            ) from None
        self._saved_tempdir, self._tempdir_redirected = tempfile.tempdir, True
        self._saved_environ = dict(os.environ)
        tempfile.tempdir = str(self.work / "tmp")
        return self.work

    # -- the switch -------------------------------------------------------------------------------
    def publish(self, manifest: Dict) -> Dict:
        """Move the work folder's artifacts into place and write the manifest (merged with the earlier
        record of other targets). Returns the manifest written."""
        assert self.work is not None
        with folder_lock(self.path):
            existing = self.existing_outputs()
            if existing and not self.force:
                raise UsageError(
                    f"{self.path / existing[0]} appeared while this run was working (another "
                    "samexport convert?); nothing was replaced; pass --force to replace it"
                )
            manifest = merge_manifest(self.path / self.manifest, manifest, self.path)
            (self.work / self.manifest).write_text(json.dumps(manifest, indent=2) + "\n")
            trash = self.work / "replaced"
            trash.mkdir()
            moved: List[str] = []
            try:
                for name in [
                    self.manifest,
                    *self.files,
                ]:  # the old manifest first: it must not describe new files
                    if (self.path / name).exists() or (self.path / name).is_symlink():
                        os.replace(self.path / name, trash / name)
                for name in self.files:
                    self.swap_in(name)
                    moved.append(name)
                self.swap_in(self.manifest)
            except BaseException:
                self.roll_back(moved, trash)
                raise
        return manifest

    def swap_in(self, name: str) -> None:
        os.replace(self.work / name, self.path / name)

    def roll_back(self, moved: List[str], trash: Path) -> None:
        """Put the files this run replaced back where they were (best effort: a kill cannot run this)."""
        for name in moved:
            new = self.path / name
            if new.is_dir() and not new.is_symlink():
                shutil.rmtree(new, ignore_errors=True)
            else:
                new.unlink(missing_ok=True)
        for old in trash.iterdir():
            if not (self.path / old.name).exists():
                os.replace(old, self.path / old.name)

    # -- always -----------------------------------------------------------------------------------
    def close(self, succeeded: bool = False) -> None:
        if self._tempdir_redirected:
            tempfile.tempdir, self._tempdir_redirected = self._saved_tempdir, False
            self.restore_environment()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None
        if not succeeded:
            for folder in reversed(self.created):  # innermost first; only folders this run made, if empty
                try:
                    folder.rmdir()
                except OSError:
                    break

    def restore_environment(self) -> None:
        """Undo what latched onto the redirected temporary folder through the environment: torch's inductor
        writes its first cache folder (`tempfile.gettempdir()/torchinductor_<user>`) into
        TORCHINDUCTOR_CACHE_DIR and makes it again on every later use, which would bring a removed work
        folder back."""
        work = str(self.work)
        for key, value in list(os.environ.items()):
            if value.startswith(work) and self._saved_environ.get(key) != value:
                if key in self._saved_environ:
                    os.environ[key] = self._saved_environ[key]
                else:
                    del os.environ[key]

    def written_mb(self) -> float:
        return round(tree_bytes(self.work) / 1e6, 1) if self.work and self.work.exists() else 0.0


def manifest_files(manifest: Dict) -> Dict[str, Dict[str, Dict]]:
    """target -> part -> {"path", "bytes"} of a manifest of any readable format (empty if it has none)."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return {}
    flat = all(isinstance(e, dict) and "path" in e for e in files.values())
    if manifest.get("format") == "samexport.export/1" or (
        "format" not in manifest and flat
    ):  # `<target>_<part>`
        nested: Dict[str, Dict[str, Dict]] = {}
        for key, entry in files.items():
            target, _, part = str(key).partition("_")
            nested.setdefault(target, {})[part] = entry
        return nested
    return {target: parts for target, parts in files.items() if isinstance(parts, dict)}


def upgrade_manifest(manifest: Dict) -> Dict:
    """A manifest of an earlier readable format in this one's layout: nested `files`, `model.family` (was
    `style`), `model.artifact_stem` (was `artifact_stem`)."""
    if not isinstance(manifest, dict) or manifest.get("format", MANIFEST_FORMAT) == MANIFEST_FORMAT:
        return manifest
    upgraded = dict(manifest, files=manifest_files(manifest), format=MANIFEST_FORMAT)
    model = dict(manifest.get("model") or {})
    for old, new in (("style", "family"), ("artifact_stem", "artifact_stem")):
        if old in model:
            model[new] = model.pop(old)
    upgraded["model"] = model
    return upgraded


def merge_manifest(path: Path, manifest: Dict, folder: Path) -> Dict:
    """The new manifest plus the earlier manifest's record of targets this run did not export (when all
    their files are still there), each kept with its own creation time and checkpoint."""
    try:
        earlier = upgrade_manifest(json.loads(path.read_text()))
    except (OSError, ValueError, RecursionError):
        return manifest
    if not isinstance(earlier, dict) or earlier.get("format") not in READABLE_FORMATS:
        return manifest
    kept = {
        target: parts
        for target, parts in manifest_files(earlier).items()
        if target not in manifest["files"]
        and parts
        and all(isinstance(e, dict) and (folder / str(e.get("path", ""))).exists() for e in parts.values())
    }
    targets = sorted(kept)
    if not targets:
        return manifest
    merged = dict(manifest)
    merged["files"] = {**kept, **manifest["files"]}
    merged["validation"] = {
        **{t: earlier.get("validation", {}).get(t) for t in targets},
        **manifest["validation"],
    }
    earlier_runs = dict(earlier.get("earlier_targets", {}))
    for target in targets:
        if target in earlier:
            merged[target] = earlier[target]
        earlier_runs[target] = earlier_runs.get(target) or {
            "created_utc": earlier.get("created_utc"),
            "checkpoint": earlier.get("checkpoint"),
            "options": earlier.get("options"),
        }
    merged["earlier_targets"] = {t: v for t, v in earlier_runs.items() if t in targets}
    return merged


def listed_path(manifest: Path, listed: str) -> Path:
    """The file a manifest lists, which must stay in the manifest's folder: a relative path without `..`,
    and no symbolic link leading elsewhere than the folder the manifest itself is in (or links into)."""
    relative = Path(listed)
    found = (manifest.parent / relative).resolve()
    folders = {manifest.parent.resolve(), manifest.resolve().parent}
    if relative.is_absolute() or ".." in relative.parts or not folders & set(found.parents):
        raise UsageError(
            f"{manifest.name} lists {listed!r}, outside its folder; an export manifest lists the files "
            "beside it: convert again"
        )
    return manifest.parent / relative
