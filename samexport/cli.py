"""The `samexport` command line."""

from __future__ import annotations

import json
import sys
import warnings

import click

from .errors import SamExportError, UsageError
from .registry import get_spec, list_models


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def _encoder_name(ctx, param, value):
    if value is None:
        return value
    return get_spec(value).name


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="samexport")
def cli() -> None:
    """Export Segment Anything models (RepViT-SAM, MobileSAM, EfficientSAM, SAM) to Core ML and ONNX."""


@cli.command("list")
def list_command() -> None:
    """The model families, with parameter counts."""
    from .info import model_info

    rows = [model_info(name) for name in list_models()]
    click.echo(f"{'name':<16}{'model':<17}{'params':>9}  description")
    for r in rows:
        spec = get_spec(r["name"])
        alias = f" (alias: {', '.join(spec.aliases)})" if spec.aliases else ""
        click.echo(f"{r['name']:<16}{r['title']:<17}{r['params']['total'] / 1e6:>8.1f}M  {r['summary']}{alias}")


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
    click.echo(f"  fp16 size      encoder ~{s['encoder']} MB, decoder ~{s['decoder']} MB")
    click.echo("  shapes         " + ", ".join(f"{k} {tuple(v)}" for k, v in info["shapes"].items()))
    click.echo(f"  checkpoint     {info['checkpoint']['file']} ({info['checkpoint']['source']})")
    click.echo("  input contract")
    for key, value in info["input_contract"].items():
        click.echo(f"    {key}: {value}")


def main() -> None:
    warnings.showwarning = _one_line_warning
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.NoSuchOption as e:
        click.echo(f"error: {e.format_message()} (see `samexport {e.ctx.info_name if e.ctx else ''} --help`)", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except SamExportError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
