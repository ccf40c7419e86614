"""Finding a connected iPhone with Xcode's devicectl (macOS only)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List

from ..errors import PlatformError


def parse_devicectl(data: Dict) -> List[Dict[str, str]]:
    """Physical iOS devices from `xcrun devicectl list devices --json-output` (connected first)."""
    found = []
    for device in data.get("result", {}).get("devices", []):
        hardware = device.get("hardwareProperties", {})
        if hardware.get("platform") != "iOS" or hardware.get("reality") != "physical":
            continue
        connection = device.get("connectionProperties", {})
        found.append(
            {
                "identifier": device.get("identifier", ""),  # CoreDevice id, for devicectl
                "udid": hardware.get("udid", ""),  # hardware UDID, for xcodebuild -destination
                "name": device.get("deviceProperties", {}).get("name", "iPhone"),
                "model": hardware.get("marketingName") or hardware.get("productType", ""),
                "connected": connection.get("tunnelState") == "connected",
                # devicectl brings a paired device's tunnel up on demand; only "unavailable" cannot be used
                "usable": connection.get("pairingState", "paired") == "paired"
                and connection.get("tunnelState") != "unavailable",
            }
        )
    return sorted(found, key=lambda d: (not d["connected"], not d["usable"]))


def connected_iphones() -> List[Dict[str, str]]:
    if shutil.which("xcrun") is None:
        raise PlatformError("--device iphone needs Xcode's command line tools (xcrun devicectl, Xcode 15+)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "devices.json"
        proc = subprocess.run(
            ["xcrun", "devicectl", "list", "devices", "--json-output", str(out)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not out.exists():
            raise PlatformError(
                f"xcrun devicectl failed ({proc.stderr.strip()[:200]}); it needs Xcode 15 or newer"
            )
        return [d for d in parse_devicectl(json.loads(out.read_text())) if d["usable"]]
