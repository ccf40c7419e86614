"""Core AI's runner: Apple's Core AI runtime, in a child process per asset (`coreai_child`)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from ..errors import UsageError
from ..runtime import Runner
from .runners import function_for


class CoreAIRunner(Runner):
    """Apple's Core AI runtime (`coreai.runtime`) running one `.aimodel` in a child process that lowers it
    once (`coreai_child`). On Linux the runtime is its reference CPU path (float32 kernels of its own); on
    macOS 27 the OS runtime decides where it runs."""

    def __init__(self, path: Path, functions: Dict[str, Dict[str, list]]) -> None:
        import os
        import subprocess
        import sys
        import tempfile

        from ..platforms import is_macos

        self.path, self.functions = Path(path), functions
        self.runtime = "coreai" if is_macos() else "coreai_reference"
        self.description = (
            "Core AI runtime (macOS)"
            if is_macos()
            else "Core AI runtime, reference CPU path (coreai-core, Linux)"
        )
        # the system's temporary folder, not convert's work folder (tempfile.tempdir points there meanwhile);
        # a folder left by a killed run (its process gone) is removed by the next runner
        system_tmp = os.environ.get("TMPDIR") or "/tmp"
        from ..fsutil import remove_abandoned

        remove_abandoned(Path(system_tmp), "samexport-coreai-")
        self.folder = tempfile.TemporaryDirectory(prefix=f"samexport-coreai-{os.getpid()}-", dir=system_tmp)
        self.log = open(Path(self.folder.name) / "stderr.txt", "w+b")  # noqa: SIM115 (lives with the runner)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "samexport.export.coreai_child", str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "TMPDIR": self.folder.name},  # the runtime's own scratch files go with ours
        )
        try:
            self.ready = self.answer()
        except BaseException:
            self.close()
            raise
        self.count = 0

    def answer(self) -> Dict:
        import json

        from .coreai_child import REPLY

        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY) :])
        self.log.seek(0)
        tail = self.log.read().decode(errors="replace").strip().splitlines()[-3:]
        status = self.process.wait()
        how = f"signal {-status}" if status < 0 else f"exit {status}"
        stage = "running" if hasattr(self, "ready") else "loading"
        raise UsageError(
            f"Apple's Core AI runtime stopped while {stage} {self.path.name} ({how}); the asset may be "
            "damaged: convert it again" + (f" [{' | '.join(tail)}]" if tail else "")
        )

    def run(self, feeds):
        import json

        function = function_for(self.path, self.functions, feeds)
        self.count += 1
        folder = Path(self.folder.name)
        feeds_path, outputs_path = folder / f"in{self.count}.npz", folder / f"out{self.count}.npz"
        np.savez(feeds_path, **{k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()})
        request = {"function": function, "feeds": str(feeds_path), "outputs": str(outputs_path)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.answer()
        with np.load(outputs_path) as stored:
            outputs = {k: stored[k] for k in stored.files}
        feeds_path.unlink()
        outputs_path.unlink()
        return outputs, {"runtime_seconds": answer["seconds"]}

    def close(self) -> None:
        if self.log.closed:
            return
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)
        self.log.close()
        self.folder.cleanup()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the child dies with its stdin
            pass
