"""Finding a connected iPhone with Xcode's devicectl (macOS only)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List

from ..errors import PlatformError

UNKNOWN_HARDWARE = "devicectl knows no hardware details of it yet: connect it by cable and unlock it"


def parse_devicectl(data: Dict) -> List[Dict[str, str]]:
    """Physical iOS devices from `xcrun devicectl list devices --json-output` (connected first). A device
    whose hardware properties devicectl does not know yet (`{}`: never connected since CoreDevice started)
    is listed as not usable with the reason, so that the error can name it instead of saying "no iPhone"."""
    found = []
    for device in data.get("result", {}).get("devices", []):
        hardware = device.get("hardwareProperties") or {}
        unknown = not hardware
        if not unknown and (hardware.get("platform") != "iOS" or hardware.get("reality") != "physical"):
            continue
        connection = device.get("connectionProperties") or {}
        found.append(
            {
                "identifier": device.get("identifier", ""),  # CoreDevice id, for devicectl
                "udid": hardware.get("udid", ""),  # hardware UDID, for xcodebuild -destination
                "name": device.get("deviceProperties", {}).get("name", "iPhone"),
                "model": hardware.get("marketingName") or hardware.get("productType", ""),
                "connected": connection.get("tunnelState") == "connected",
                # devicectl brings a paired device's tunnel up on demand; only "unavailable" cannot be used
                "usable": not unknown
                and connection.get("pairingState", "paired") == "paired"
                and connection.get("tunnelState") != "unavailable",
                **({"why_not": UNKNOWN_HARDWARE} if unknown else {}),
            }
        )
    return sorted(found, key=lambda d: (not d["connected"], not d["usable"]))


def list_iphones(run=None) -> List[Dict[str, str]]:
    """Every physical iOS device devicectl lists (see parse_devicectl); `usable` says which can run."""
    from .harness import MIN_XCODE, run_command

    if shutil.which("xcrun") is None and run is None:
        raise PlatformError(
            f"--device iphone needs Xcode's command line tools (xcrun devicectl, Xcode {MIN_XCODE}+)"
        )
    run = run or run_command
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "devices.json"
        command = ["xcrun", "devicectl", "list", "devices", "--json-output", str(out)]
        proc = run(command, timeout=DEVICECTL_LIST_TIMEOUT_S)
        if proc.returncode != 0 or not out.exists():
            raise PlatformError(
                f"xcrun devicectl list devices failed ({(proc.stderr or '').strip()[:200] or 'no output'}); "
                f"it needs Xcode {MIN_XCODE} or newer"
            )
        return parse_devicectl(json.loads(out.read_text()))


# listing devices answers in seconds; a stuck CoreDevice service would otherwise hang bench forever
DEVICECTL_LIST_TIMEOUT_S = 60.0
