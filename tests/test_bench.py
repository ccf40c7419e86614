"""`samexport bench`: statistics, report formats, off-platform errors and the out-of-memory check."""

from __future__ import annotations

import csv
import io
import json
import sys

import numpy as np
import pytest

from helpers import fake_result, invoke, one_line_error
from helpers import run_bench as cli
from samexport.bench import device_profiles as devices
from samexport.bench import report
from samexport.bench.child import run_part
from samexport.bench.ios import parse_devicectl
from samexport.bench.stats import summarize
from samexport.errors import UsageError
from samexport.families.registry import get_spec


def test_summarize():
    s = summarize([10.0, 12.0, 11.0, 30.0, 9.0])
    assert s["n"] == 5 and s["median_ms"] == 11.0 and s["min_ms"] == 9.0 and s["max_ms"] == 30.0
    assert s["p90_ms"] == pytest.approx(np.percentile([9, 10, 11, 12, 30], 90))
    assert s["mean_ms"] == pytest.approx(14.4) and s["std_ms"] == pytest.approx(np.std([10, 12, 11, 30, 9]))
    with pytest.raises(ValueError):
        summarize([])


def test_sizes_and_device_budgets():
    assert devices.parse_size("4G") == 4 * 1024**3
    assert devices.parse_size("512MB") == 512 * 1024**2
    assert devices.parse_size("1.5GiB") == int(1.5 * 1024**3)
    with pytest.raises(UsageError, match="size like 4G"):
        devices.parse_size("lots")
    assert devices.budget_bytes("iphone12") == 2 * 1024**3  # 4 GB x 0.5, the stated rule
    with pytest.raises(UsageError, match="choose one of: iphone12"):
        devices.profile("nokia3310")
    assert "os_proc_available_memory" in devices.load()["budget_rule"]


def test_report_formats(tmp_path):
    result = fake_result()
    rows = list(csv.DictReader(io.StringIO(report.to_csv(result))))
    assert [r["status"] for r in rows] == ["ok", "ok", "oom"]
    assert float(rows[0]["median_ms"]) == 1600.0 and rows[2]["median_ms"] == ""
    md = report.to_markdown(result)
    assert (
        "| RepViT-SAM | encoder | fp32 | ok | 1600.0 |" in md and "| SAM ViT-B | encoder | fp32 | oom |" in md
    )
    assert json.loads(report.to_json(result)) == result
    paper = report.paper_table([result, fake_result("iPhone 12")])
    lines = paper.strip().splitlines()
    assert lines[0] == "| Platform | RepViT-SAM | SAM decoder | SAM ViT-B |"
    assert lines[2] == "| CPU (onnxruntime), test CPU | 1600.0 | 50.0 | OOM |"
    assert len(lines) == 4
    int8 = fake_result()
    for row in int8["rows"]:
        row["precision"] = "int8"
    header = report.paper_table([fake_result(), int8]).splitlines()[0]
    assert header == (
        "| Platform | RepViT-SAM | SAM decoder | SAM ViT-B | RepViT-SAM (int8) | SAM decoder (int8) "
        "| SAM ViT-B (int8) |"
    )
    png = tmp_path / "chart.png"
    report.plot(result, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_devicectl_parsing():
    data = {
        "result": {
            "devices": [
                {
                    "identifier": "A",
                    "deviceProperties": {"name": "Watch"},
                    "hardwareProperties": {"platform": "watchOS", "reality": "physical"},
                    "connectionProperties": {},
                },
                {
                    "identifier": "B",
                    "deviceProperties": {"name": "Old iPhone"},
                    "hardwareProperties": {
                        "platform": "iOS",
                        "reality": "physical",
                        "marketingName": "iPhone 12",
                    },
                    "connectionProperties": {"tunnelState": "disconnected"},
                },
                {
                    "identifier": "C",
                    "deviceProperties": {"name": "Test iPhone"},
                    "hardwareProperties": {
                        "platform": "iOS",
                        "reality": "physical",
                        "productType": "iPhone16,1",
                    },
                    "connectionProperties": {"tunnelState": "connected"},
                },
            ]
        }
    }
    phones = parse_devicectl(data)
    assert [p["identifier"] for p in phones] == ["C", "B"]
    assert phones[0]["connected"] and not phones[1]["connected"] and phones[1]["model"] == "iPhone 12"
    assert parse_devicectl({}) == []


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the off-macOS errors")
@pytest.mark.parametrize(
    "device,message",
    [
        ("m1", "needs macOS on Apple silicon"),
        ("iphone", "needs macOS with Xcode and a connected iPhone"),
        ("cuda", "needs onnxruntime-gpu"),
    ],
)
def test_off_platform_devices_fail_with_one_line(capsys, tmp_path, device, message):
    report_path = tmp_path / "bench.json"
    out = invoke(
        capsys,
        "bench",
        "--device",
        device,
        "--encoder",
        "tinyvit",
        "--models-dir",
        str(tmp_path / "models"),
        "--format",
        "json",
        "--output",
        str(report_path),
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0 and message in out.stderr and "--device cpu" in out.stderr
    assert not report_path.exists() and not (tmp_path / "models").exists()


def test_bad_bench_options_one_line(capsys, tmp_path):
    for args, message in (
        (["--device", "tpu"], "unknown --device"),
        (["--format", "xml"], "--format"),
        (["--memory-limit", "lots"], "size like 4G"),
        (["--as-device", "nokia"], "device profile"),
    ):
        out = invoke(capsys, "bench", "--encoder", "tinyvit", "--models-dir", str(tmp_path), *args)
        assert message in one_line_error(out), args


def onnx_decoder_job(path):
    """A worker job for MobileSAM's ONNX decoder: its inputs as the family describes them."""
    from samexport.export.options import ConvertOptions
    from samexport.export.target import targets

    options = ConvertOptions(encoder="tinyvit", target="onnx")
    family = get_spec("tinyvit").family
    interface = family.part_interfaces(family.export_shapes(options), targets()["onnx"].form(options))[
        "decoder"
    ]
    return {
        "backend": "onnx",
        "path": path,
        "part": "decoder",
        "inputs": [t.describe() for t in interface.inputs],
    }


def test_oom_part_is_reported_and_the_next_part_still_runs(exports):
    out, _ = exports
    decoder = str(out / "MobileSAMDecoder.onnx")
    job = {**onnx_decoder_job(decoder), "sizes": {"N": 2}, "runs": 2, "warmup": 0}
    starved = run_part(job, limit_bytes=160 * 1024**2)
    assert starved["status"] == "oom", starved
    assert starved["memory_limit_mb"] == 160 and starved["error"]
    fed = run_part(job)
    assert fed["status"] == "ok" and fed["stats"]["n"] == 2 and fed["peak_rss_mb"] > 160


def test_bench_cpu_end_to_end(exports, tmp_path):
    out, _ = exports
    report_path, png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = cli(
        "--device",
        "cpu",
        "--encoder",
        "mobilesam",
        "--models-dir",
        str(out),
        "--runs",
        "2",
        "--warmup",
        "0",
        "--points",
        "1,3",
        "--format",
        "json",
        "--output",
        str(report_path),
        "--plot",
        str(png),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(report_path.read_text())
    assert data["schema"] == "samexport.bench/2" and data["device"]["peak_gflops"] > 0
    parts = [(r["part"], r["points"], r["tokens"]) for r in data["rows"]]
    assert parts == [("encoder", None, None), ("decoder", 1, 2), ("decoder", 3, 4)]
    for row in data["rows"]:
        assert row["status"] == "ok" and len(row["samples_ms"]) == 2 and row["stats"]["median_ms"] > 0
        assert row["load_ms"] > 0 and row["first_ms"] > 0 and row["peak_rss_mb"] > 0
        assert row["compute_floor_ms"] > 0 and row["gmacs"] > 0
    for key in ("samexport", "torch", "coremltools", "onnxruntime"):
        assert data["versions"][key]
    assert data["machine"]["cores"] and data["machine"]["ram_gib"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_paper_table_from_saved_results(tmp_path):
    paths = []
    for label in ("MacBook M1 Pro", "iPhone 12"):
        path = tmp_path / f"{label}.json"
        path.write_text(report.to_json(fake_result(label)))
        paths += ["--from", str(path)]
    out = cli(*paths, "--table", "paper", "--format", "markdown")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[2] == "| MacBook M1 Pro | 1600.0 | 50.0 | OOM |"
    assert out.stdout.splitlines()[3] == "| iPhone 12 | 1600.0 | 50.0 | OOM |"
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    out = cli("--from", str(bad))
    assert out.returncode == 2 and "not a samexport bench result" in out.stderr
    # issue 26 item 17: as a table the paper's layout comes with the full table (p90, memory, floor)
    both = cli(*paths, "--table", "paper")
    assert (
        both.returncode == 0
        and "p90 ms" in both.stdout
        and "| MacBook M1 Pro | 1600.0 | 50.0 | OOM |" in both.stdout
    )


# -- regressions from outside testing (issue 12) --------------------------------------------------------
def test_runs_that_share_a_platform_label_stay_apart(tmp_path, capsys):
    """Item 6: two result files of one device are two rows, not one row mixing both."""
    a, b = fake_result(), fake_result()
    b["rows"][0]["stats"] = summarize([900.0])
    paths = [tmp_path / "monday.json", tmp_path / "tuesday.json"]
    for path, result in zip(paths, (a, b)):
        path.write_text(json.dumps(result))
    out = invoke(capsys, "bench", "--from", str(paths[0]), "--from", str(paths[1]), "--table", "paper")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.strip().splitlines() if line.startswith("| CPU")]  # the paper rows
    assert lines[0].startswith("| CPU (onnxruntime), test CPU (monday.json) | 1600.0 |")
    assert lines[1].startswith("| CPU (onnxruntime), test CPU (tuesday.json) | 900.0 |")


def test_a_floor_above_a_measurement_is_marked_and_explained():
    """Item 7: a floor above the median is starred, with the reason beside the table."""
    result = fake_result()
    for row in result["rows"]:
        row["compute_floor_ms"] = 10.0
    assert report.FLOOR_ABOVE_NOTE not in report.to_markdown(
        result
    ) and "| 10.0* |" not in report.to_markdown(result)
    result["rows"][0]["compute_floor_ms"] = 3108.0  # median 1600
    md = report.to_markdown(result)
    assert "| 3108.0* |" in md and "| 10.0 |" in md
    assert md.strip().endswith(report.FLOOR_ABOVE_NOTE)


def test_the_peak_is_measured_before_and_after_and_the_better_kept(monkeypatch):
    """Item 7: the floor comes from the better of two peak measurements."""
    from samexport.bench import backends
    from samexport.bench.orchestrate import Bench, BenchOptions

    peaks = iter([100.0, 400.0])
    monkeypatch.setattr(backends, "measure_cpu_peak_gflops", lambda: next(peaks))
    bench = Bench(BenchOptions(encoders=("tinyvit",)), quiet=True)
    bench.result = {"device": bench.device_info(), "rows": [{"gmacs": 10.0, "compute_floor_ms": 200.0}]}
    bench.remeasure_peak()
    assert bench.result["device"]["peak_gflops"] == 400.0
    assert bench.result["device"]["peak_gflops_before_after"] == [100.0, 400.0]
    assert bench.result["rows"][0]["compute_floor_ms"] == pytest.approx(50.0)


@pytest.mark.parametrize("option", ["--output", "--plot"])
def test_unwritable_report_paths_are_exit_2_and_create_nothing(tmp_path, capsys, option):
    """Item 10: a report path under a file, or a folder, is refused up front; missing folders are not made
    (issue 26 item 7: a report's folder must exist, as segment's outputs' must)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for path, message in ((blocker / "sub" / "r.json", "does not exist"), (tmp_path, "is a folder")):
        out = invoke(
            capsys, "bench", "--encoder", "tinyvit", "--models-dir", str(tmp_path / "m"), option, str(path)
        )
        assert message in one_line_error(out)
    ok_later = tmp_path / "new" / "deeper" / "r.json"
    invoke(capsys, "bench", "--device", "tpu", "--encoder", "tinyvit", option, str(ok_later))
    assert not (tmp_path / "new").exists() and not (tmp_path / "m").exists()


def test_unwritable_validate_json_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = invoke(capsys, "validate", str(tmp_path), "--json", str(blocker / "r.json"))
    assert "file does not exist" in one_line_error(out)


@pytest.mark.parametrize("value", ["0", "-1G", "0.5K", "", "inf", "nan", "100M"])
def test_memory_limit_range(tmp_path, capsys, value):
    """Item 11: no silent no-limit, no zero/negative/tiny limits, no overflow; the bound is said."""
    out = invoke(
        capsys, "bench", "--encoder", "tinyvit", "--models-dir", str(tmp_path), "--memory-limit", value
    )
    message = one_line_error(out)
    assert "below 128M" in message or "size like 4G" in message or "finite size" in message
    assert devices.parse_size("128M") == 128 * 1024**2


def test_results_without_the_fields_reports_read_are_exit_2(tmp_path, capsys):
    """Item 12: `--from` a file without `device` (or rows) is one line, exit 2."""
    result = fake_result()
    del result["device"]
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(result))
    assert "incomplete bench result (no device.label)" in one_line_error(
        invoke(capsys, "bench", "--from", str(path))
    )


def test_progress_file_has_no_fixed_temporary_name(tmp_path):
    """Item 15: the rewrite after each part goes through a unique temporary file (two runs cannot collide)."""
    from samexport.bench.orchestrate import Bench, BenchOptions

    output = tmp_path / "r.json"
    (tmp_path / "r.json.tmp").mkdir()  # the fixed name the old code used: now irrelevant
    bench = Bench(BenchOptions(encoders=("tinyvit",), output=output), quiet=True)
    bench.result = fake_result()
    bench.write_progress()
    assert json.loads(output.read_text()) == bench.result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.json.tmp"]


def test_devicectl_ids_tunnels_and_timeouts(monkeypatch):
    """Issue 13 items 1 and 8: the UDID is kept apart from the CoreDevice id, a paired phone whose tunnel
    is down is usable (devicectl raises it on demand), one that is unavailable is not, and a stuck
    devicectl call ends as a failed run instead of hanging."""
    import subprocess

    from samexport.bench import harness

    def phone(identifier, udid, tunnel, pairing="paired"):
        return {
            "identifier": identifier,
            "deviceProperties": {"name": identifier},
            "hardwareProperties": {"platform": "iOS", "reality": "physical", "udid": udid},
            "connectionProperties": {"tunnelState": tunnel, "pairingState": pairing},
        }

    phones = parse_devicectl(
        {
            "result": {
                "devices": [
                    phone("5B3C-core", "00008101-000A", "disconnected"),
                    phone("gone", "x", "unavailable"),
                    phone("strange", "y", "connected", pairing="unpaired"),
                ]
            }
        }
    )
    by_id = {p["identifier"]: p for p in phones}
    assert by_id["5B3C-core"]["udid"] == "00008101-000A" and by_id["5B3C-core"]["usable"]
    assert not by_id["gone"]["usable"] and not by_id["strange"]["usable"]

    def stuck(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", stuck)
    result = harness.run_command(["xcrun", "devicectl", "device", "install", "app"])
    assert result.returncode == 124 and "timed out after 300 s" in result.stderr
    with pytest.raises(subprocess.TimeoutExpired):
        harness.run_command(["xcodebuild", "build"], timeout=5)


def test_decoder_rows_with_several_prompt_sets_per_call(exports):
    out, _ = exports
    decoder = str(out / "MobileSAMDecoder.onnx")
    job = {**onnx_decoder_job(decoder), "sizes": {"N": 2, "B": 4}, "runs": 1, "warmup": 0}
    row = run_part(job)
    assert row["status"] == "ok" and row["stats"]["n"] == 1


def test_bench_batch_is_checked(capsys, tmp_path):
    for args, message in (
        (["--batch", "0"], "--batch must be a prompt-set count"),
        (["--batch", "4", "--device", "iphone"], "measured by the host bench"),
    ):
        out = invoke(capsys, "bench", "--encoder", "tinyvit", "--models-dir", str(tmp_path), *args)
        assert message in one_line_error(out), args
