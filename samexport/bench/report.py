"""Bench reports: JSON (every raw sample), CSV, markdown, a terminal table, the paper's layout, a PNG."""

from __future__ import annotations

import csv
import io
import json
from typing import Dict, List, Optional

from ..coreml_placement import ane_share

SCHEMA = "samexport.bench/2"
# Result files this samexport reads: version 1 named a row's family `style` (`upgrade_result`).
READABLE_SCHEMAS = ("samexport.bench/1", SCHEMA)
CSV_FIELDS = [
    "device",
    "model",
    "part",
    "points",
    "frames",
    "tokens",
    "batch",
    "precision",
    "compute_unit",
    "status",
    "median_ms",
    "p90_ms",
    "min_ms",
    "std_ms",
    "load_ms",
    "first_ms",
    "peak_rss_mb",
    "memory_limit_mb",
    "gmacs",
    "compute_floor_ms",
    "error",
]


def flat(result: Dict, row: Dict) -> Dict:
    stats = row.get("stats") or {}
    out = {"device": result["device"]["label"], **{k: row.get(k) for k in CSV_FIELDS if k in row}}
    out.update({k: round(stats[k], 2) for k in ("median_ms", "p90_ms", "min_ms", "std_ms") if k in stats})
    for key in ("load_ms", "first_ms", "compute_floor_ms"):
        if isinstance(out.get(key), float):
            out[key] = round(out[key], 2)
    return out


def cell(row: Dict) -> str:
    if row["status"] == "ok":
        return f"{row['stats']['median_ms']:.1f}"
    return row["status"].upper()


FLOOR_ABOVE_NOTE = (
    "* the compute floor is above the measured median: the GEMM peak it is derived from was "
    "measured while other work ran on this machine, so it understates the machine"
)


def _ane(row: Dict) -> str:
    """The share of the estimated cost Core ML places on the Neural Engine (rows with a compute plan)."""
    share = ane_share(row.get("placement"))
    return f"{share:.0f}" if share is not None else ""


def floor_above_median(row: Dict) -> bool:
    floor, stats = row.get("compute_floor_ms"), row.get("stats") or {}
    return floor is not None and "median_ms" in stats and floor > stats["median_ms"]


def _floor(row: Dict) -> str:
    """The compute floor, where the device's peak rate is known; starred when a measurement beats it."""
    if row.get("compute_floor_ms") is None:
        return ""
    return f"{row['compute_floor_ms']:.1f}" + ("*" if floor_above_median(row) else "")


def to_json(result: Dict) -> str:
    return json.dumps(result, indent=2) + "\n"


def to_csv(result: Dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in result["rows"]:
        writer.writerow(flat(result, row))
    return buffer.getvalue()


SWEEP_UNITS = {"points": "pt", "frames": "frame"}  # the row fields a part's bench sweep fills
SWEEP_FIELDS = tuple(SWEEP_UNITS)


def part_label(row: Dict) -> str:
    """`encoder`, `decoder, 5 pts`, `tube, 3 frames`: the part and the size its sweep measured it at."""
    for field, unit in SWEEP_UNITS.items():
        size = row.get(field)
        if size is not None:
            return f"{row['part']}, {size} {unit}" + ("s" if size != 1 else "")
    return row["part"]


def _part_label(row: Dict) -> str:
    return part_label(row) + (f", {row['batch']} prompt sets per call" if (row.get("batch") or 1) > 1 else "")


def column_of(facts, spec, size: Optional[int]) -> Optional[str]:
    """A part's paper-table column at one bench size (`parts.BenchFacts.column`), or None."""
    if facts.column is None or (facts.column_size is not None and size != facts.column_size):
        return None
    return facts.column.format(title=spec.title, decoder=getattr(spec.family, "decoder_title", spec.title))


def row_column(row: Dict) -> Optional[str]:
    """A row's paper-table column: recorded by this samexport, else from the part's interface today (rows of
    results written before bench recorded it)."""
    if "column" in row:
        return row["column"]
    from ..errors import UsageError
    from ..families.registry import get_spec
    from ..parts import PartForm

    try:
        spec = get_spec(row["model"])
        family = spec.family
        interfaces = family.part_interfaces(family.session_shapes(), PartForm(False, False, True))
    except UsageError:  # a model this samexport does not know
        return None
    if row["part"] not in interfaces:
        return None
    facts = interfaces[row["part"]].bench
    return column_of(facts, spec, row.get(facts.sweep) if facts.sweep else None)


def memory_label(result: Dict) -> str:
    """What the peak-memory column holds: the harness measures phys_footprint (what jetsam compares with
    the app's limit), the host bench a child process's resident set."""
    metric = str(result.get("options", {}).get("memory_metric", ""))
    return "peak phys_footprint MB" if metric.startswith("phys_footprint") else "peak RSS MB"


def runs_text(runs) -> str:
    """Timed runs as recorded: one number, or one per part (part -> runs)."""
    if isinstance(runs, dict):
        return " / ".join(f"{n} ({part})" for part, n in runs.items())
    return str(runs)


def to_markdown(result: Dict) -> str:
    lines = [
        f"Device: {result['device']['label']} ({result['machine']['description']}); "
        f"{result['options']['target']}, runs {runs_text(result['options']['runs'])}",
        "",
        "| model | part | precision | status | median ms | p90 ms | min ms | load ms | first ms "
        f"| {memory_label(result)} | GMACs | floor ms | on ANE, % of cost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        s = row.get("stats") or {}
        stat = {k: f"{s[k]:.1f}" if k in s else "" for k in ("median_ms", "p90_ms", "min_ms")}
        ms = {k: f"{row[k]:.0f}" if row.get(k) is not None else "" for k in ("load_ms", "first_ms")}
        lines.append(
            f"| {row['title']} | {_part_label(row)} | {row['precision']} | {row['status']} | "
            f"{stat['median_ms']} | {stat['p90_ms']} | {stat['min_ms']} | "
            f"{ms['load_ms']} | {ms['first_ms']} | "
            f"{row.get('peak_rss_mb') or ''} | {row['gmacs']:.1f} | {_floor(row)} | {_ane(row)} |"
        )
    if any(floor_above_median(row) for row in result["rows"]):
        lines += ["", FLOOR_ABOVE_NOTE]
    return "\n".join(lines) + "\n"


def paper_table(results: List[Dict], markdown: bool = True) -> str:
    """RepViT-SAM Table 1 layout: a row per platform, a column per encoder and per decoder (1 point)."""
    columns: List[str] = []
    cells: Dict[str, Dict[str, str]] = {}
    for result in results:
        platform = result["device"]["label"]
        cells.setdefault(platform, {})
        for row in result["rows"]:
            name = row_column(row)
            if name is None:
                continue
            if row["precision"] != "fp32" and result["options"]["target"] == "onnx":
                name += f" ({row['precision']})"
            if cells[platform].get(name, "ERROR") not in ("ERROR", "NAN"):
                continue  # one column per name (a family's decoder): the first model that measured it
            if name not in columns:
                columns.append(name)
            cells[platform][name] = cell(row)
    header = ["Platform"] + columns
    body = [[platform] + [values.get(c, "") for c in columns] for platform, values in cells.items()]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in body]
        notes = placement_notes(results)
        return "\n".join(out + ([""] + notes if notes else [])) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(body)
    return buffer.getvalue()


def placement_notes(results: List[Dict]) -> List[str]:
    """Paper-table footnotes: per platform, the Neural Engine's share of each part's estimated cost."""
    notes = []
    for result in results:
        shares = []
        for row in result["rows"]:
            share = ane_share(row.get("placement"))
            if share is not None and row_column(row) is not None:
                shares.append(f"{row['title']} {row['part']} {share:.0f}%")
        if shares:
            notes.append(
                f"- {result['device']['label']}: on the Neural Engine (share of Core ML's estimated "
                f"cost, MLComputePlan): {', '.join(shares)}"
            )
    return notes


def print_table(result: Dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"samexport bench: {result['device']['label']}")
    for column in (
        "model",
        "part",
        "precision",
        "status",
        "median ms",
        "p90 ms",
        "load ms",
        memory_label(result),
        "floor ms",
        "on ANE %",
    ):
        table.add_column(column, justify="left" if column in ("model", "part", "status") else "right")
    for row in result["rows"]:
        s = row.get("stats") or {}
        table.add_row(
            row["title"],
            _part_label(row),
            row["precision"],
            row["status"],
            f"{s['median_ms']:.1f}" if s else "",
            f"{s['p90_ms']:.1f}" if s else "",
            f"{row['load_ms']:.0f}" if row.get("load_ms") else "",
            str(row.get("peak_rss_mb") or ""),
            _floor(row),
            _ane(row),
        )
    Console(width=140).print(table)
    if any(floor_above_median(row) for row in result["rows"]):
        Console(width=140).print(FLOOR_ABOVE_NOTE)


def plot(result: Dict, path) -> None:
    """Bar chart of median latency per model and part, OOM/error marked, log scale, as PNG to `path` (a
    file name or a binary file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    labels = [
        f"{r['title']}\n{_part_label(r)}" + (f"\n{r['precision']}" if r["precision"] != "fp32" else "")
        for r in rows
    ]
    values = [r["stats"]["median_ms"] if r["status"] == "ok" else 0.0 for r in rows]
    parts = list(dict.fromkeys(r["part"] for r in rows))  # one colour per part, in the order they ran
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
    colors = [palette[parts.index(r["part"]) % len(palette)] for r in rows]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(rows)), 5.5))
    bars = ax.bar(range(len(rows)), [v if v else float("nan") for v in values], color=colors)
    ax.set_yscale("log")
    ok = [v for v in values if v]
    top = max(ok) * 3 if ok else 10.0
    ax.set_ylim(min(ok) / 3 if ok else 1.0, top)
    for i, (row, _bar) in enumerate(zip(rows, bars)):
        if row["status"] == "ok":
            ax.text(i, values[i] * 1.08, f"{values[i]:.0f}", ha="center", va="bottom", fontsize=8)
        else:
            ax.text(
                i,
                (min(ok) if ok else 1.0),
                row["status"].upper(),
                ha="center",
                va="bottom",
                color="#d62728",
                fontsize=10,
                fontweight="bold",
                rotation=90,
            )
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("median latency (ms, log scale)")
    ax.set_title(f"samexport bench, {result['device']['label']} ({result['options']['target']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def upgrade_result(data: dict) -> dict:
    """A result file of a readable schema in this one's layout (rows' `style` is `family`)."""
    if data.get("schema") == SCHEMA:
        return data
    rows = [
        {("family" if k == "style" else k): v for k, v in row.items()} if isinstance(row, dict) else row
        for row in data.get("rows", [])
    ]
    return {**data, "schema": SCHEMA, "rows": rows}
