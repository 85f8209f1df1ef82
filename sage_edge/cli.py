"""The ``sage-edge`` command line.

Commands are imported lazily (``COMMANDS``), so ``sage-edge fuse`` on a Jetson
never imports torch and ``--help`` is fast. Every user-caused error is a
``SageEdgeError``, printed as one line (``error: ...``) with exit code 1.
"""
from __future__ import annotations

import importlib
import importlib.util
import io
import sys

import click

from sage_edge import __version__
from sage_edge.errors import SageEdgeError

# command name -> "module:attribute", in the order --help lists them.
COMMANDS: dict[str, str] = {
    "fuse": "sage_edge.commands.fuse:fuse",
    "export": "sage_edge.commands.export:export",
    "fetch": "sage_edge.commands.fetch:fetch",
    "metrics": "sage_edge.commands.metrics:metrics",
    "eval": "sage_edge.commands.eval:eval_command",
    "quantize": "sage_edge.commands.quantize:quantize",
    "check-precision": "sage_edge.commands.check_precision:check_precision",
    "check-trt": "sage_edge.commands.check_trt:check_trt",
    "build-engine": "sage_edge.commands.build_engine:build_engine",
    "verify": "sage_edge.commands.verify:verify",
    "doctor": "sage_edge.commands.doctor:doctor",
    "run": "sage_edge.commands.run:run",
    "calibrate": "sage_edge.commands.calibrate:calibrate",
    "bench": "sage_edge.commands.bench:bench",
    "train": "sage_edge.commands.train:train",
}


def _available(name: str) -> bool:
    return importlib.util.find_spec(COMMANDS[name].split(":")[0]) is not None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not _available(cmd_name):
            return None
        module_name, attribute = COMMANDS[cmd_name].split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context) -> object:
        try:
            try:
                return super().invoke(ctx)
            except ModuleNotFoundError as exc:  # an optional extra that is not installed
                from sage_edge.extras import missing_module_error

                error = missing_module_error(exc, ctx.invoked_subcommand)
                if error is None:
                    raise
                raise error from None
            except BrokenPipeError:  # `sage-edge doctor | head -1`: the reader left; stop quietly, as Unix tools do
                _silence_stdout()
                sys.exit(1)
            except OSError as exc:  # a write (or read) the library did not turn into a SageEdgeError itself
                error = _os_error(exc)
                if error is None:
                    raise
                raise error from None
        except click.UsageError as exc:  # a wrong option or argument: one line too, with where to look
            where = f"; see `{exc.ctx.command_path} -h`" if exc.ctx is not None else ""
            message = " ".join(exc.format_message().split()).rstrip(".")
            click.echo(f"error: {message}{where}", err=True)
            sys.exit(exc.exit_code)
        except SageEdgeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not fail again on the closed pipe."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def _os_error(exc: OSError) -> SageEdgeError | None:
    """One line for an OSError that names a file (a folder the user cannot write, a full disk, ...)."""
    import errno

    from sage_edge.atomic import WRITE_ERRNOS, output_error

    if exc.filename is None:  # a failed write() names no file; other unnamed OSErrors are bugs to see in full
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return SageEdgeError("no space left on the output disk; free some space or write elsewhere")
        return None
    if exc.errno in WRITE_ERRNOS:
        return output_error(exc.filename, exc)
    return SageEdgeError(f"{exc.filename}: {exc.strerror or exc}; check the path and its permissions")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sage-edge")
def main() -> None:
    """SAGE infrared-visible image fusion, from desktop GPU to NVIDIA Jetson."""


if __name__ == "__main__":
    main()
