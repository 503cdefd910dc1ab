"""The ``tango`` entry point: one click group, and one place that turns errors into lines.

Every expected failure (a ``TangoError`` or a click usage error) ends as a
single ``tango: error: ...`` line on stderr with a named exit code, never a
traceback.
"""
from __future__ import annotations

import logging
import os
import sys

import click

from cli.options import hyphenate
from common.errors import TangoError


class TangoGroup(click.Group):
    """The command group; it maps each subcommand's old underscore option spellings to hyphens."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        return name, command, hyphenate(command, rest) if command is not None else rest


@click.group(cls=TangoGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """tango: a two-tier (TangoBERT) model cascade for text classification.

    A small model labels every item; items it is unsure of go to a big model.
    Run it in-process (eval, label) or as a Celery cluster on Redis.
    """
    from cli.cluster import COMMANDS

    setup_logging(verbose, models=ctx.invoked_subcommand not in {command.name for command in COMMANDS})


def setup_logging(verbose: int = 0, models: bool = True) -> None:
    """Log to stderr; ``models`` also quiets transformers, which costs its import, so the cluster
    client's commands, which never load a model, skip it (a job's clock starts with submit:
    bench/RESULTS.md, section (3), session 3)."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tango.progress").setLevel(min(level, logging.INFO))  # long work reports off a terminal too
    if models:
        quiet_transformers()


def quiet_transformers() -> None:
    """transformers warns about unused weights when a tier is cut from a backbone, and
    draws a bar per checkpoint load; neither helps someone labelling a corpus."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def run(command: click.Command, prog_name: str | None = None, args: list[str] | None = None) -> int:
    """Invoke a click command, mapping every expected error to one line and an exit code."""
    name = prog_name or "tango"
    if not isinstance(command, click.Group):  # a lone command (run_tango.py); the group does this itself
        args = hyphenate(command, sys.argv[1:] if args is None else list(args))
    try:
        result = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except TangoError as exc:
        click.echo(f"{name}: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo(f"{name}: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"{name}: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo(f"{name}: interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run(cli))


def _register() -> None:
    from cli.evaluate import eval_command

    cli.add_command(eval_command, "eval")

    from cli.cluster import COMMANDS
    from cli.label import label_command
    from cli.worker import worker_command

    for command in (*COMMANDS, label_command, worker_command):
        cli.add_command(command)
    from cli.calibrate import calibrate_command
    from cli.sweep import sweep_command
    from cli.train import train_command

    cli.add_command(train_command, "train")
    cli.add_command(sweep_command, "sweep")
    cli.add_command(calibrate_command, "calibrate")
    from cli.demo.command import demo_command

    cli.add_command(demo_command, "demo")


_register()

if __name__ == "__main__":
    main()
