"""The `samexport` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Dict, Optional

import click

from .errors import SamExportError, first_line
from .everything import EVERYTHING_DEFAULTS
from .export.options import DEFAULT_POINTS
from .fsutil import OutputFiles


def _targets():
    from .export.target import targets

    return targets()


def _target_help() -> str:
    return f"{', '.join(_targets())}, several comma-separated, or all."


def _precision_help() -> str:
    choose = [t.title for t in _targets().values() if len(t.precisions) > 1]
    fixed = [f"{t.title} files are {t.precisions[0]}" for t in _targets().values() if len(t.precisions) == 1]
    return (
        f"Arithmetic of {' and '.join(choose)} files: fp16 (the default) or fp32. {'; '.join(fixed)} "
        "(no --precision)."
    )


def _compress_help() -> str:
    from .export.compression import COMPRESSIONS

    offered = {
        mode: [t.title for t in _targets().values() if mode in t.compressions] for mode in COMPRESSIONS
    }
    groups: Dict[str, list] = {}
    for mode, titles in offered.items():
        if mode != "none" and titles:
            groups.setdefault(", ".join(titles), []).append(mode)
    listed = "; ".join(f"{', '.join(modes)} ({titles})" for titles, modes in groups.items())
    return (
        f"none, or: {listed}. The palettes ending in g are grouped (iOS18); w8a8 is int8 weights and "
        "activations (iOS17), a8w4 grouped 4-bit palettes with int8 activations (iOS18). "
        "See docs/compression.md."
    )


def _backend_help() -> str:
    runs = ", ".join(f"{name} ({t.runs_on})" for name, t in _targets().items())
    return f"torch (the PyTorch model itself) or an export target: {runs}."


def _device_help() -> str:
    from .bench.backends import device_help

    return device_help()


def _extensions() -> str:
    return ", ".join(t.extension for t in _targets().values())


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def _encoder_name(ctx, param, value):
    if value is None:
        return value
    from .families.registry import get_spec

    return get_spec(value).name


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="samexport")
def cli() -> None:
    """Export Segment Anything models (RepViT-SAM, MobileSAM, EfficientSAM, RAP-SAM, SAM) to Core ML, ONNX,
    Core AI and LiteRT, checked against the official models."""


@cli.command("list")
def list_command() -> None:
    """The models, with parameter counts."""
    from .families.registry import get_spec, list_models
    from .info import model_params

    click.echo(f"{'name':<16}{'model':<17}{'params':>9}  description")
    for name in list_models():
        spec = get_spec(name)
        alias = f" (alias: {', '.join(spec.aliases)})" if spec.aliases else ""
        total = model_params(name)["total"]
        click.echo(f"{name:<16}{spec.title:<17}{total / 1e6:>8.1f}M  {spec.summary}{alias}")


@cli.command("info")
@click.option("--encoder", required=True, callback=_encoder_name, help="Model name (see `samexport list`).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info_command(encoder: str, as_json: bool) -> None:
    """Parameters, GMACs at 1024, fp16 size, shapes and the preprocessing contract of one model."""
    from .info import model_info

    info = model_info(encoder)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    p, g, s = info["params"], info["gmacs"], info["fp16_mb"]
    click.echo(f"{info['title']} ({info['name']}): {info['summary']}")
    click.echo(f"  params         encoder {p['encoder'] / 1e6:.2f}M, decoder {p['decoder'] / 1e6:.2f}M")
    click.echo("  GMACs          " + ", ".join(f"{k} {v}" for k, v in g.items()))
    click.echo(f"  fp16 weights   encoder ~{s['encoder']} MB, decoder ~{s['decoder']} MB ({s['covers']})")
    click.echo("  shapes         " + ", ".join(f"{k} {tuple(v)}" for k, v in info["shapes"].items()))
    click.echo(f"  checkpoint     {info['checkpoint']['file']} ({info['checkpoint']['source']})")
    click.echo("  input contract")
    for key, value in info["input_contract"].items():
        click.echo(f"    {key}: {value}")


@cli.command("convert")
@click.option("--encoder", required=True, callback=_encoder_name, help="Model name (see `samexport list`).")
@click.option(
    "--target",
    default="coreml",
    show_default=True,
    help=_target_help(),
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="Official checkpoint, .pt/.pth or .safetensors (default: fixture weights).",
)
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("models"), show_default=True)
@click.option(
    "--precision",
    default=None,
    help=_precision_help(),
)
@click.option(
    "--compress",
    default="none",
    show_default=True,
    help=_compress_help(),
)
@click.option(
    "--keep-layers",
    default=None,
    help="Core ML: leave these layers uncompressed: first-last (the first and last weight layer of encoder "
    "and decoder), or comma-separated PyTorch module paths / MIL op names.",
)
@click.option(
    "--weight-clip",
    type=float,
    default=None,
    help="4-bit modes: clip each weight tensor at this many standard deviations per output channel "
    "before fitting palettes.",
)
@click.option(
    "--decoder-shapes",
    default="enumerated",
    show_default=True,
    help="Core ML decoder: enumerated (one function, every prompt shape) or multifunction (one static "
    "function per shape sharing weights, iOS18).",
)
@click.option(
    "--points",
    default=",".join(map(str, DEFAULT_POINTS)),
    show_default=True,
    help="Prompt point counts (1 to 64) the decoder must take exactly (a box counts as 2).",
)
@click.option(
    "--batch",
    default="1",
    show_default=True,
    help="Core ML decoder: prompt sets per call it takes exactly, e.g. 1,4,16,64 for everything mode "
    "(ONNX decoders take any number).",
)
@click.option(
    "--image-input",
    default="image",
    show_default=True,
    help="Core ML encoder input: image (RGB ImageType) or tensor (normalized float).",
)
@click.option(
    "--input-size",
    default=None,
    help="RAP-SAM: the encoder's fixed input HxW (default 800x1088: a 4:3 landscape image resized the "
    "official way; see the letterbox rule in the manifest's input contract).",
)
@click.option(
    "--classifier",
    type=click.Path(path_type=Path),
    default=None,
    help="RAP-SAM: the (133, 17, 768) class-embedding file its panoptic head needs (models/README.md).",
)
@click.option(
    "--min-target", default=None, help="Core ML deployment target: iOS16 (the default), iOS17 or iOS18."
)
@click.option("--force", is_flag=True, help="Replace existing exports.")
@click.option("--no-validate", is_flag=True, help="Skip the numeric comparison with PyTorch.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def convert_command(
    encoder,
    target,
    checkpoint,
    output_dir,
    precision,
    compress,
    keep_layers,
    weight_clip,
    decoder_shapes,
    points,
    batch,
    image_input,
    input_size,
    classifier,
    min_target,
    force,
    no_validate,
    quiet,
) -> None:
    """Export encoder + decoder (reparameterized), validate them against PyTorch, write a manifest."""
    from .export.convert import convert
    from .export.options import ConvertOptions, artifact_names, parse_counts, parse_size
    from .families.registry import get_spec

    options = ConvertOptions(
        encoder=encoder,
        target=target,
        checkpoint=checkpoint,
        output_dir=output_dir,
        precision=precision,
        compress=compress,
        keep_layers=keep_layers,
        weight_clip=weight_clip,
        decoder_shapes=decoder_shapes,
        points=parse_counts(points, "--points"),
        batch=parse_counts(batch, "--batch"),
        image_input=image_input,
        input_size=parse_size(input_size) if input_size else None,
        classifier=classifier,
        min_target=min_target,
        force=force,
        validate=not no_validate,
    )
    manifest = convert(options, quiet=quiet)
    files = ", ".join(
        f"{f['path']} ({f['bytes'] / 1e6:.1f} MB)"
        for t in options.targets
        for f in manifest["files"][t].values()
    )
    manifest_path = output_dir / artifact_names(get_spec(encoder), options)[("manifest", "")]
    click.echo(f"done: {files}; manifest {manifest_path}")


@cli.command("segment")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--encoder", required=True, callback=_encoder_name, help="Model name (see `samexport list`).")
@click.option(
    "--checkpoint", type=click.Path(path_type=Path), help="Official checkpoint (default: fixture weights)."
)
@click.option(
    "--point", "points", multiple=True, help="A click X,Y (positive) or X,Y,LABEL (1 or 0), in pixels."
)
@click.option(
    "--box", "boxes", multiple=True, help="A box X0,Y0,X1,Y1 in pixels; several boxes: one mask each."
)
@click.option("--everything", is_flag=True, help="Automatic mask generation over a point grid.")
@click.option(
    "--video",
    is_flag=True,
    help="IMAGE is a clip (a video file or a folder of <number>.jpg frames), --output an .mp4: RAP-SAM "
    "segments every instance (ids kept across frames); EdgeTAM tracks the objects --point/--box (frame 0) "
    "or --prompts name.",
)
@click.option(
    "--prompts",
    "prompts_file",
    type=click.Path(path_type=Path),
    default=None,
    help='--video, EdgeTAM: a JSON list of prompts on any frames, [{"frame": 0, "object": 1, "points": '
    '[[x, y, 1], ...]}, {"frame": 5, "object": 2, "box": [x0, y0, x1, y1]}, ...].',
)
@click.option(
    "--score-threshold",
    type=float,
    default=None,
    help="--video: instances drawn and written have at least this score (default 0.5; 0 keeps all 100).",
)
@click.option(
    "--memory-budget",
    type=float,
    default=None,
    help="--video: gigabytes the run may use (default: the memory free when it starts); a clip estimated "
    "to need more is refused before any frame is decoded.",
)
@click.option(
    "--backend",
    default="torch",
    show_default=True,
    help=_backend_help(),
)
@click.option(
    "--models-dir",
    default=Path("models"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where the exports --backend runs are (converted there when missing).",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Overlay picture (.png); with --video the annotated video (.mp4).",
)
@click.option(
    "--json", "json_path", type=click.Path(path_type=Path), help="Masks (COCO RLE), scores and timings."
)
@click.option(
    "--points-per-side",
    default=EVERYTHING_DEFAULTS["points_per_side"],
    show_default=True,
    help="Everything mode: grid points per side (1 to 128).",
)
@click.option(
    "--pred-iou-thresh",
    default=EVERYTHING_DEFAULTS["pred_iou_thresh"],
    show_default=True,
    help="Everything mode: IoU filter.",
)
@click.option(
    "--stability-score-thresh",
    default=EVERYTHING_DEFAULTS["stability_score_thresh"],
    show_default=True,
    help="Everything mode: stability filter.",
)
@click.option(
    "--crop-n-layers",
    default=EVERYTHING_DEFAULTS["crop_n_layers"],
    show_default=True,
    help="Everything mode: crop layers (0 to 3).",
)
@click.option(
    "--classifier",
    type=click.Path(path_type=Path),
    default=None,
    help="RAP-SAM: the class-embedding file its panoptic head (--everything) needs (models/README.md).",
)
@click.option("--force", is_flag=True, help="Replace existing output files.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def segment_command(
    image,
    encoder,
    checkpoint,
    points,
    boxes,
    everything,
    backend,
    models_dir,
    output,
    json_path,
    points_per_side,
    pred_iou_thresh,
    stability_score_thresh,
    crop_n_layers,
    classifier,
    video,
    prompts_file,
    score_threshold,
    memory_budget,
    force,
    quiet,
) -> None:
    """Masks for a photo from clicks/boxes or everything mode, drawn over it (and written as JSON).

    RAP-SAM: one mask per click or box, --everything is its panoptic segmentation with class names, and
    --video segments a video's instances with ids kept across frames. EdgeTAM: --video tracks the prompted
    objects through the clip."""
    from .errors import UsageError
    from .segment import (
        DEFAULT_SCORE_THRESHOLD,
        SegmentOptions,
        VideoSegmentOptions,
        parse_box,
        parse_point,
        segment,
        segment_video,
    )

    if video:
        from .families.registry import get_spec
        from .track_prompts import prompts_from_flags, read_prompts_file

        tracker = get_spec(encoder).family.tracks_prompted_objects
        if everything:
            raise UsageError("--everything is for photos; drop it with --video")
        if prompts_file is not None and (points or boxes):
            raise UsageError(
                "give the prompts as --point/--box (frame 0) or as --prompts FILE.json, not both"
            )
        if tracker and score_threshold is not None:
            raise UsageError(
                f"--score-threshold is for instance segmentation; {encoder} tracks the objects you prompt "
                "(each frame's object score says whether the object is there): drop --score-threshold"
            )
        prompts = (
            read_prompts_file(prompts_file)
            if prompts_file is not None
            else prompts_from_flags([parse_point(p) for p in points], [parse_box(b) for b in boxes])
        )
        document = segment_video(
            VideoSegmentOptions(
                video=image,
                encoder=encoder,
                output=output,
                json_path=json_path,
                checkpoint=checkpoint,
                classifier=classifier,
                backend=backend.lower(),
                models_dir=models_dir,
                score_threshold=DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold,
                force=force,
                memory_budget_gb=memory_budget,
                prompts=tuple(prompts),
            ),
            quiet=quiet,
        )
        if tracker:
            what = f"{len(document['objects'])} objects tracked"
        else:
            what = f"{sum(len(frame) for frame in document['instances'])} instances drawn"
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in document["timings_s"].items())
        click.echo(
            f"done: {document['frames']} frames, {what} -> {output}" + (f", {json_path}" if json_path else "")
        )
        click.echo(f"  {timings}")
        return
    for flag, value in (
        ("--score-threshold", score_threshold),
        ("--memory-budget", memory_budget),
        ("--prompts", prompts_file),
    ):
        if value is not None:
            raise UsageError(f"{flag} is a --video option; add --video or drop it")

    options = SegmentOptions(
        image=image,
        encoder=encoder,
        output=output,
        checkpoint=checkpoint,
        points=[parse_point(p) for p in points],
        boxes=[parse_box(b) for b in boxes],
        everything=everything,
        backend=backend.lower(),
        models_dir=models_dir,
        json_path=json_path,
        classifier=classifier,
        force=force,
        generator_kwargs={
            "points_per_side": points_per_side,
            "pred_iou_thresh": pred_iou_thresh,
            "stability_score_thresh": stability_score_thresh,
            "crop_n_layers": crop_n_layers,
        },
    )
    document = segment(options, quiet=quiet)
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in document["timings_s"].items())
    click.echo(f"done: {len(document['masks'])} masks -> {output}" + (f", {json_path}" if json_path else ""))
    click.echo(f"  {timings}")


@cli.command("validate", epilog=f"Files: {_extensions()} (one per export target), or *.export.json.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="The checkpoint the files were converted from (none for default weights).",
)
@click.option(
    "--method",
    default="auto",
    show_default=True,
    help="auto (Core ML prediction on Apple silicon, else NumPy), coreml, or numpy (evaluate the saved "
    "ML program op by op; any platform).",
)
@click.option(
    "--classifier",
    type=click.Path(path_type=Path),
    default=None,
    help="RAP-SAM: the class-embedding file a panoptic package converted from a checkpoint holds.",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the full report here.")
@click.option("--force", is_flag=True, help="Replace an existing --json file.")
def validate_command(paths, checkpoint, method, classifier, json_path, force) -> None:
    """Numeric verdict for exported files or export manifests against PyTorch.

    Exit 0 when every file meets its floor (fp16: PSNR >= 35 dB; fp32: max error <= 1e-4 of
    max |ref| in NumPy; compressed weights: cosine >= 0.98 and PSNR >= 20 dB; never NaN/Inf), 1 when one
    does not.
    """
    from .export.check import render
    from .export.validate import inputs_of, raise_if_any_failed, validate

    files = OutputFiles([json_path], force)
    files.refuse_inputs(inputs_of(list(paths)))
    files.check()
    extras = {"classifier": classifier} if classifier is not None else {}
    reports = validate(list(paths), checkpoint=checkpoint, method=method, extras=extras)
    click.echo(render(reports))
    if json_path is not None:
        document = {path: report.to_json() for path, report in reports.items()}
        files.write_text(json_path, json.dumps(document, indent=2) + "\n")
    raise_if_any_failed(reports)


@cli.command("bench")
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help=f"A device and the targets it measures: {_device_help()}.",
)
@click.option(
    "--encoder", "encoders", default="repvit", show_default=True, help="Model name, comma list, or all."
)
@click.option(
    "--target",
    help="The target to measure on --device (its first is the default).",
)
@click.option(
    "--compute-units",
    default="all",
    show_default=True,
    help="Core ML: comma list of all, cpu_and_ne, cpu_and_gpu, cpu_only.",
)
@click.option("--points", default="1,5", show_default=True, help="Decoder prompt point counts to measure.")
@click.option(
    "--batch", default=1, show_default=True, help="Decoder rows: prompt sets per call (cpu, cuda, m1)."
)
@click.option("--runs", type=int, help="Timed runs per part (default: 5 for encoders, 20 for decoders).")
@click.option("--warmup", default=1, show_default=True, help="Untimed runs after the first inference.")
@click.option("--memory-limit", help="Memory limit per part, e.g. 4G (parts beyond it are reported oom).")
@click.option("--as-device", help="Use a device profile's memory budget (e.g. iphone12; see devices.json).")
@click.option("--compress", default="none", show_default=True, help="Measure none or int8 exports.")
@click.option("--models-dir", type=click.Path(path_type=Path), default=Path("models"), show_default=True)
@click.option("--format", "fmt", default="table", show_default=True, help="table, json, csv or markdown.")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="Write the report here (with --format json it is rewritten after every part).",
)
@click.option("--plot", type=click.Path(path_type=Path), help="Write a PNG bar chart here.")
@click.option("--table", "table_layout", help="paper: the RepViT-SAM paper's layout (platform x model).")
@click.option(
    "--from",
    "sources",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Report earlier JSON results (repeatable, e.g. one per device) instead of measuring.",
)
@click.option(
    "--via-harness",
    is_flag=True,
    help="--device m1: measure inside the ios_harness macOS app (as an app would) instead of coremltools.",
)
@click.option(
    "--harness-dir", type=click.Path(path_type=Path), help="The ios_harness folder (default ./ios_harness)."
)
@click.option(
    "--team",
    envvar="SAMEXPORT_TEAM_ID",
    help="Apple development team ID for signing the harness app (or SAMEXPORT_TEAM_ID).",
)
@click.option(
    "--prepare-only",
    is_flag=True,
    help="Only stage the packages and BenchPlan.json in ios_harness/Models (any platform), to build in "
    "Xcode.",
)
@click.option(
    "--harness-timeout", default=3600, show_default=True, help="Seconds to wait for the harness app."
)
@click.option(
    "--one-job-per-launch",
    is_flag=True,
    help="ios_harness: a fresh app process per part (no caches or leftovers; exact per-part footprint peak).",
)
@click.option("--force", is_flag=True, help="Replace existing --output and --plot files.")
def bench_command(
    device,
    encoders,
    target,
    compute_units,
    points,
    batch,
    runs,
    warmup,
    memory_limit,
    as_device,
    compress,
    models_dir,
    fmt,
    output,
    plot,
    table_layout,
    sources,
    via_harness,
    harness_dir,
    team,
    prepare_only,
    harness_timeout,
    one_job_per_launch,
    force,
) -> None:
    """Encoder and decoder latency and memory on a device, with out-of-memory verdicts."""
    from .bench import device_profiles, report
    from .bench.orchestrate import Bench, BenchOptions, distinct_labels, load_results, resolve_encoders
    from .export.options import parse_counts

    if fmt not in ("table", "json", "csv", "markdown"):
        raise click.BadParameter(f"{fmt!r}; choose table, json, csv or markdown", param_hint="--format")
    if table_layout not in (None, "paper"):
        raise click.BadParameter(f"{table_layout!r}; the only layout is paper", param_hint="--table")
    files = OutputFiles([output, plot], force)
    files.check()
    if sources:
        results = distinct_labels([load_results(p) for p in sources], list(sources))
        if table_layout == "paper":
            text = report.paper_table(results, markdown=fmt != "csv")
        elif fmt == "json":
            text = "".join(report.to_json(r) for r in results)
        else:
            text = "".join((report.to_csv if fmt == "csv" else report.to_markdown)(r) for r in results)
        if table_layout == "paper" and fmt == "table":
            for result in results:  # the paper's layout has no p90, memory or compute floor: both are shown
                report.print_table(result)
        if output is not None:
            files.write_text(output, text)
        else:
            click.echo(text, nl=False)
        _write_plot(files, results[0], plot)
        return

    options = BenchOptions(
        device=device,
        encoders=resolve_encoders(encoders),
        target=target,
        compute_units=tuple(c.strip() for c in compute_units.split(",") if c.strip()),
        points=parse_counts(points, "--points"),
        batch=batch,
        runs=runs,
        warmup=warmup,
        memory_limit=device_profiles.parse_size(memory_limit) if memory_limit is not None else None,
        as_device=as_device,
        compress=compress,
        models_dir=models_dir,
        output=output if fmt == "json" and not table_layout else None,
        via_harness=via_harness,
        harness_dir=harness_dir,
        team=team,
        prepare_only=prepare_only,
        harness_timeout_s=float(harness_timeout),
        one_job_per_launch=one_job_per_launch,
    )
    result = Bench(options, files=files).run()
    if result is None:  # --prepare-only
        click.echo(
            "staged; open ios_harness in Xcode (see ios_harness/README.md) or run without --prepare-only "
            "on a Mac"
        )
        return
    if table_layout == "paper":
        text = report.paper_table([result], markdown=fmt != "csv")
    else:
        text = {
            "json": report.to_json,
            "csv": report.to_csv,
            "markdown": report.to_markdown,
            "table": report.to_markdown,
        }[fmt](result)
    if output is not None:
        files.write_text(output, text)
    if fmt == "table":  # with --table paper too: its layout has no p90, memory or compute floor
        report.print_table(result)
    if (fmt != "table" or table_layout) and output is None:
        click.echo(text, nl=False)
    if output is not None:
        click.echo(f"report: {output}")
    _write_plot(files, result, plot)


def _write_plot(files: OutputFiles, result: Dict, plot: Optional[Path]) -> None:
    from .bench import report

    if plot is not None:
        files.write({plot: lambda f: report.plot(result, f)}, binary=[plot])
        click.echo(f"plot: {plot}")


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that `finally` blocks clean up as for Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


def run(args: list[str] | None = None) -> int:
    """Run the command line on `args` (default: sys.argv[1:]); errors become one `error:` line on stderr.
    Returns the exit status: 0, 1 (a check failed or a bug), 2 (bad usage or input), 130 (interrupted)."""
    try:
        cli.main(args, prog_name="samexport", standalone_mode=False)
        return 0
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("error: interrupted (Ctrl-C); temporary files were removed", err=True)
        return 130
    except Terminated:
        click.echo("error: terminated (SIGTERM); temporary files were removed", err=True)
        return 128 + signal.SIGTERM
    except click.exceptions.NoSuchOption as e:
        click.echo(
            f"error: {e.format_message()} (see `samexport {e.ctx.info_name if e.ctx else ''} --help`)",
            err=True,
        )
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except SamExportError as e:
        click.echo(f"error: {e}", err=True)
        return e.exit_code
    except Exception as e:  # a bug or a converter failure: one line, the traceback on request
        if os.environ.get("SAMEXPORT_DEBUG"):
            raise
        click.echo(
            f"error: {type(e).__name__}: {first_line(e, 300)} (set SAMEXPORT_DEBUG=1 for the traceback)",
            err=True,
        )
        return 1


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    warnings.showwarning = _one_line_warning
    code = run()
    silence_native_output()
    sys.exit(code)


def silence_native_output() -> None:
    """What native libraries print as the process ends (LiteRT's accelerators log `DestroyAccelerator` from
    their destructors) goes nowhere: samexport's last line, its error included, stays the last a script
    reads."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        try:
            os.dup2(null, fd)
        except OSError:
            pass


if __name__ == "__main__":
    main()
