"""The system's own record of an out-of-memory kill: iOS JetsamEvent reports (`JetsamEvent-*.ips`).

A report is two JSON documents: a one-line header (`bug_type` "298", `timestamp`, `os_version`) and
a body whose `processes` array lists every process at the event; the jettisoned ones carry a
`reason` (`per-process-limit`: the app went over its memory limit), `rpages` (resident pages) and
`memoryStatus.pageSize` gives the page size (Apple, "Identifying high-memory use with jetsam event
reports"). The harness driver pulls the reports that appear during a run and backs each `oom` row
with the one that names the app, or labels the row's verdict as resting on the breadcrumb alone.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional

JETSAM_PREFIX = "JetsamEvent"
APP_PROCESS = "SAMBench"


def parse_report(text: str) -> Optional[Dict]:
    """Header and body of a JetsamEvent report; None for anything else (another report, a damaged file)."""
    first, _, rest = text.partition("\n")
    try:
        header, body = json.loads(first), json.loads(rest)
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(body, dict) or str(header.get("bug_type")) != "298":
        return None
    return {"header": header, "body": body}


def kill_of(report: Dict, process: str = APP_PROCESS, file: str = "") -> Optional[Dict]:
    """What the report says about `process` if it was jettisoned: reason, footprint at the kill, time."""
    body = report["body"]
    page_size = (body.get("memoryStatus") or {}).get("pageSize")
    for entry in body.get("processes") or []:
        if isinstance(entry, dict) and entry.get("name") == process and entry.get("reason"):
            rpages = entry.get("rpages")
            footprint = round(rpages * page_size / 2**20, 1) if rpages and page_size else None
            return {
                "file": file,
                "timestamp": report["header"].get("timestamp"),
                "reason": entry["reason"],
                "footprint_mb": footprint,
                "pid": entry.get("pid"),
                "largest_process": body.get("largestProcess"),
            }
    return None


def evidence_text(kill: Dict) -> str:
    footprint = f" at {kill['footprint_mb']} MB" if kill.get("footprint_mb") is not None else ""
    return f"jetsam: {kill['reason']}{footprint} ({kill['file']}, {kill['timestamp']})"


WEAKER = (
    "breadcrumb only: the app ended during this part and no JetsamEvent report names it (a crash, "
    "a watchdog kill or a swipe away would look the same)"
)


def attach_evidence(rows: List[Dict], kills: List[Optional[Dict]]) -> None:
    """Back the `oom` rows with the kills the driver saw, in order: each relaunch after a kill makes the
    app write one `oom` row for the part it was running. A row without a matching report keeps its
    status with the weaker verdict named in `oom_evidence`."""
    pending = list(kills)
    for row in rows:
        if row.get("status") != "oom":
            continue
        kill = pending.pop(0) if pending else None
        if kill and kill.get("reason") == "per-process-limit":
            row["oom_evidence"] = evidence_text(kill)
            row["jetsam"] = kill
        elif kill:
            row["oom_evidence"] = f"{evidence_text(kill)}; not a memory-limit kill"
            row["jetsam"] = kill
        else:
            row["oom_evidence"] = WEAKER
