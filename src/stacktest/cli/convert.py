"""``stacktest import``: a compose file -> the equivalent ``stack.toml``, to keep or to
learn from. Loading the written file gives the same stack; what the compose file asked for
and stacktest does not honour is listed at its top."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stacktest.cli.common import (
    DEFAULT_FILE,
    EXIT_USAGE,
    Commands,
    EnvFileOpt,
    FileOpt,
    ProfileOpt,
    escape,
    fail,
    new_console,
)

commands = Commands()
register = commands.register


@commands.command("import")
def import_(
    file: FileOpt = DEFAULT_FILE,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write it (`-`: standard output).")
    ] = Path("stack.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Write the stack.toml a compose file stands for (its notes as comments at the top)."""
    import tomli_w

    from stacktest.errors import ConfigError
    from stacktest.spec.compose import is_compose_file, load_compose
    from stacktest.spec.files import stack_files

    try:
        files, explicit = stack_files([str(f) for f in file or []])
        if not all(is_compose_file(f) for f in files):
            fail(f"{files[0]} is not a compose file: nothing to import", EXIT_USAGE)
        compose = load_compose(
            files, explicit=explicit, profiles=profile or None, env_files=env_file or ()
        )
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    table = _portable(compose.table, out.parent.absolute() if str(out) != "-" else Path.cwd())
    read = ", ".join(str(f) for f in compose.project.files)
    header = [f"# stack.toml written by `stacktest import` from {read}"]
    if compose.notes:
        header.append("# not honoured as written in the compose file:")
        header += [f"#   {note}" for note in compose.notes]
    text = "\n".join(header) + "\n\n" + tomli_w.dumps(table)
    if str(out) == "-":
        print(text, end="")
        return
    if out.exists() and not force:
        fail(f"{out} exists\n  hint: pass --force to overwrite it, or --out another path")
    out.write_text(text)
    new_console().print(
        f"wrote {escape(str(out))}: {len(table['services'])} services"
        + (f", {len(compose.notes)} note(s) at its top" if compose.notes else "")
    )


def _portable(table: dict[str, Any], base: Path) -> dict[str, Any]:
    """Absolute paths under the new file's directory written relative to it; empty
    tables left out (TOML has no null)."""

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str) and value.startswith(str(base) + "/"):
            return value[len(str(base)) + 1 :]
        return value

    out: dict[str, Any] = fix(table)
    if not out.get("stack"):
        out.pop("stack", None)
    return out
