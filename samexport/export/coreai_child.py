"""Runs one Core AI asset with Apple's runtime (`coreai.runtime`) for `coreai_runner.CoreAIRunner`, in a child
process: lowering a second asset in one process crashes the runtime (inside `AIModelAsset._write_odix`),
so every asset gets its own process, which lowers it once and answers requests until stdin closes.

    python -m samexport.export.coreai_child ASSET.aimodel

Each request is one JSON line {"function": name, "feeds": in.npz, "outputs": out.npz}; the answer is one
line starting with REPLY (the runtime prints its own lines on stdout too).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

REPLY = "SAMEXPORT-COREAI-REPLY "


def reply(message: dict) -> None:
    sys.stdout.write(REPLY + json.dumps(message) + "\n")
    sys.stdout.flush()


async def serve(path: Path) -> None:
    import numpy as np
    from coreai.authoring import AIModelAsset
    from coreai.runtime import NDArray

    start = time.perf_counter()
    asset = AIModelAsset.load(path)
    async with asset.executable() as model:
        reply({"ready": True, "functions": list(model.function_names), "load_s": time.perf_counter() - start})
        functions = {}
        for line in sys.stdin:
            request = json.loads(line)
            name = request["function"]
            if name not in functions:
                functions[name] = model.load_function(name)
            with np.load(request["feeds"]) as stored:
                feeds = {k: NDArray(np.ascontiguousarray(stored[k])) for k in stored.files}
            start = time.perf_counter()
            outputs = await functions[name](feeds)
            seconds = time.perf_counter() - start
            np.savez(request["outputs"], **{k: np.asarray(v.numpy()) for k, v in outputs.items()})
            reply({"seconds": seconds})


def main() -> None:
    asyncio.run(serve(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
