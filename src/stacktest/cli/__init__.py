"""The ``stacktest`` command line: one module per command group, imported by nothing
outside this package (the library never reaches into its command line).

Commands read the run directory (``.stacktest/`` beside the stack file) so that
``up -d`` in one shell and ``status`` / ``logs`` / ``exec`` / ``down`` in another
work together. Heavy modules are imported inside commands to keep start-up fast.

A new command goes in the module of its group (or a new module here, added to
``_GROUPS``), with ``commands.command()`` as its decorator.
"""

from __future__ import annotations

import sys

import typer

from stacktest.cli import cache, convert, faults, inspect, load, logs, report, up

app = typer.Typer(
    name="stacktest",
    help="Real multi-service stacks (Postgres, NATS, Valkey, your processes) for tests. No Docker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_GROUPS = (up, report, inspect, convert, logs, faults, cache, load)
for _group in _GROUPS:
    _group.register(app)


#: Commands whose output is the secrets, asked for: ``env`` (for eval) and ``import`` (a
#: stack.toml that must keep the values). Every other command's output is redacted.
SHOWS_SECRETS = {"env", "import"}


def main() -> None:
    from stacktest.engine.rundir import private_files
    from stacktest.redact import RedactingWriter

    private_files()  # every file a command writes (reports, run dirs) is the user's alone

    if not SHOWS_SECRETS & set(sys.argv[1:2]):
        sys.stdout = RedactingWriter(sys.stdout)
        sys.stderr = RedactingWriter(sys.stderr)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
