"""The Compose model: which files, read and interpolated, merged into one document.

What ``docker compose`` reads, stacktest reads the same way:

- the files: ``-f a.yml -f b.yml`` merged in order; ``COMPOSE_FILE`` (``:``-separated)
  when no file is given; else the default file and, beside it, its override
  (``compose.override.yaml``, ``docker-compose.override.yml`` ...);
- per file: YAML (anchors, ``<<`` merge keys), then every string value interpolated
  (:mod:`.interpolate`) from the shell, then the project directory's ``.env`` (or the
  ``--env-file`` files); the error text of ``:?`` names the file and key;
- ``include:`` (a path, a list, or ``{path, project_directory, env_file}`` entries),
  ``extends:`` (same file, or ``file:`` another), with Compose's merge rules;
- ``profiles``: a service with profiles runs only when one of them is active
  (``--profile``, ``COMPOSE_PROFILES``); a service without runs always;
- ``x-`` keys are extensions, ignored (``x-stacktest`` is stacktest's own).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacktest.errors import ConfigError
from stacktest.spec.compose.dotenv import DotenvError, read_dotenv
from stacktest.spec.compose.interpolate import InterpolationError, Interpolator
from stacktest.spec.compose.shape import check_document
from stacktest.spec.reading import parse_yaml, read_text

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_NAMES = (
    "compose.override.yaml", "compose.override.yml",
    "docker-compose.override.yaml", "docker-compose.override.yml",
)  # fmt: skip
#: Service keys whose lists replace (not extend) the base's when files or extends merge.
REPLACED = {"command", "entrypoint", "env_file"}
#: Service keys that are mappings, or lists written for one (``- KEY=VALUE``).
MAPPINGS = {"environment", "labels", "extra_hosts", "sysctls", "depends_on", "build", "deploy",
            "healthcheck", "logging", "ulimits", "annotations"}  # fmt: skip


def line_of(lines: Sequence[str], key: str) -> int | None:
    """The line of a dotted key path's last part (after its parents, when found)."""
    start, found = 0, None
    for part in key.replace("[", ".[").split("."):
        if not part or part.startswith("["):
            continue
        pattern = re.compile(rf"^\s*-?\s*[\"']?{re.escape(part)}[\"']?\s*:")
        for number in range(start, len(lines)):
            if pattern.match(lines[number]):
                found, start = number + 1, number + 1
                break
    return found


@dataclass
class Project:
    """The merged document and what went into it."""

    document: dict[str, Any]
    files: list[Path]
    #: Every file read (the -f files, includes, extends' files, .env files): the digest.
    inputs: list[Path] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    profiles: tuple[str, ...] = ()
    left_out: set[str] = field(default_factory=set)


def compose_files(path: Path, *, explicit: bool) -> list[Path]:
    """The files a single ``path`` stands for: itself, and its override file when the
    file was not named by the user (as ``docker compose`` without ``-f``)."""
    if explicit:
        return [path]
    overrides = [path.parent / n for n in OVERRIDE_NAMES if (path.parent / n).is_file()]
    return [path, *overrides[:1]]


def load_project(
    files: Sequence[Path],
    *,
    profiles: Sequence[str] | None = None,
    env_files: Sequence[Path] = (),
    strict: bool = False,
) -> Project:
    first = files[0]
    project_dir = first.parent
    shell = dict(os.environ)
    dotenv, inputs = read_env_files(
        list(env_files) or [project_dir / ".env"], shell, required=bool(env_files)
    )
    interpolator = Interpolator.over(shell, dotenv, strict=strict)
    loader = _Loader(interpolator, {**dotenv, **shell})
    merged: dict[str, Any] = {}
    for path in files:
        merged = merge_documents(merged, loader.read(path))
    if profiles is None:
        raw = shell.get("COMPOSE_PROFILES", "")
        profiles = [p.strip() for p in raw.split(",") if p.strip()]
    active = set(profiles)
    services = merged.get("services")
    left_out: set[str] = set()
    if isinstance(services, dict):
        for name, body in list(services.items()):
            wanted = body.get("profiles") if isinstance(body, dict) else None
            if wanted and not (active & {str(p) for p in wanted}) and "*" not in active:
                left_out.add(str(name))
                del services[name]
    unset = dict.fromkeys(name for interp in loader.interpolators for name in interp.unset)
    warnings = [
        f"variable {name} is not set: it is an empty string (as Compose does); set it in the "
        f"environment or in {project_dir / '.env'}, or write ${{{name}:-default}}"
        for name in unset
    ]
    return Project(
        document=merged,
        files=list(files),
        inputs=inputs + loader.read_files,
        environment={**dotenv, **shell},
        warnings=warnings,
        profiles=tuple(profiles),
        left_out=left_out,
    )


def read_env_files(
    files: Sequence[Path], lookup: Mapping[str, str], *, required: bool
) -> tuple[dict[str, str], list[Path]]:
    """The variables of ``.env``-style files read in order (a later file's value wins; a
    value may refer to ``lookup``, the shell, and to earlier keys), and the files read.
    A missing file is skipped, or an error when ``required`` (named by the user)."""
    values: dict[str, str] = {}
    read: list[Path] = []
    for env_file in files:
        if not env_file.is_file():
            if required:
                raise ConfigError(
                    "no such env file", file=env_file, hint="check --env-file or include's env_file"
                )
            continue
        read.append(env_file)
        try:
            values.update(read_dotenv(env_file, lambda name: lookup.get(name, values.get(name))))
        except DotenvError as exc:
            raise ConfigError(exc.problem, file=env_file, line=exc.line) from None
    return values, read


class _Loader:
    def __init__(self, interpolator: Interpolator, variables: dict[str, str]) -> None:
        self.interpolator = interpolator
        #: The project's variables (the shell over its .env): an included project's env
        #: file only gives defaults under them, as in Compose.
        self.variables = variables
        #: Every interpolator used (the project's and each included project's), for warnings.
        self.interpolators = [interpolator]
        self.read_files: list[Path] = []
        self._cache: dict[tuple[Path, int], dict[str, Any]] = {}
        self._lines: list[str] = []
        self._stack: list[Path] = []

    def read(self, path: Path, interpolator: Interpolator | None = None) -> dict[str, Any]:
        """One file: parsed, interpolated, its ``include`` and ``extends`` resolved."""
        path = path.absolute()
        interpolator = interpolator or self.interpolator
        if path in self._stack:
            chain = " -> ".join(str(p) for p in [*self._stack, path])
            raise ConfigError(f"files include or extend each other in a cycle: {chain}", file=path)
        key = (path, id(interpolator))  # interpolators live as long as the loader
        if key in self._cache:
            return copy.deepcopy(self._cache[key])
        if not path.is_file():
            raise ConfigError(
                "no such file", file=path, hint="check the path (-f, include, extends)"
            )
        self._stack.append(path)
        try:
            document = self._parse(path, interpolator)
            document = self._include(path, document)
            self._extends(path, document, interpolator)
        finally:
            self._stack.pop()
        self._cache[key] = document
        if path not in self.read_files:
            self.read_files.append(path)
        return copy.deepcopy(document)

    def _parse(self, path: Path, interpolator: Interpolator) -> dict[str, Any]:
        text = read_text(path)
        self._lines = text.splitlines()
        data = parse_yaml(text, path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError("a compose file is a mapping (services: ...)", file=path)
        check_document(data, path, lambda key: line_of(self._lines, key))
        return {k: self._interpolate(path, str(k), v, interpolator) for k, v in data.items()}

    def _interpolate(self, path: Path, key: str, value: Any, interpolator: Interpolator) -> Any:
        if isinstance(value, str):
            try:
                return interpolator.expand(value)
            except InterpolationError as exc:
                raise ConfigError(
                    str(exc), file=path, key=key, line=line_of(self._lines, key),
                    hint="escape a literal $ as $$; set the variable in the environment or .env",
                ) from None  # fmt: skip
        if isinstance(value, dict):
            return {
                k: self._interpolate(path, f"{key}.{k}", v, interpolator) for k, v in value.items()
            }
        if isinstance(value, list):
            return [
                self._interpolate(path, f"{key}[{i}]", v, interpolator)
                for i, v in enumerate(value)
            ]
        return value

    def _include(self, path: Path, document: dict[str, Any]) -> dict[str, Any]:
        """Each ``include`` entry is a project of its own, as in Compose: its relative paths
        mean what they mean from its ``project_directory`` (default: the included file's
        directory), and its ``env_file`` (default: that directory's ``.env``) gives default
        values under the including project's variables."""
        entries = document.pop("include", None)
        if entries is None:
            return document
        if not isinstance(entries, list):
            entries = [entries]
        combined: dict[str, Any] = {}
        for i, entry in enumerate(entries):
            key = f"include[{i}]"
            if not isinstance(entry, (str, dict)):
                raise ConfigError(f"{key}: expected a path or {{path, project_directory, "
                                  "env_file}", file=path, key="include")  # fmt: skip
            spec = entry if isinstance(entry, dict) else {"path": entry}
            paths = spec.get("path")
            paths = paths if isinstance(paths, list) else [paths]
            if not paths or not all(isinstance(p, str) and p for p in paths):
                raise ConfigError(f"{key}: expected a path", file=path, key="include",
                                  hint="include: [other/compose.yaml]")  # fmt: skip
            first = path.parent / paths[0]
            project_dir = first.parent
            if spec.get("project_directory") is not None:
                project_dir = path.parent / str(spec["project_directory"])
            interpolator = self._project_interpolator(path, key, spec, project_dir)
            for included in paths:
                other = self.read(path.parent / included, interpolator)
                for body in (other.get("services") or {}).values():
                    _rebase_paths(body, project_dir.absolute(), path.parent.absolute())
                clash = set(other.get("services") or {}) & set(combined.get("services") or {})
                clash |= set(other.get("services") or {}) & set(document.get("services") or {})
                if clash:
                    raise ConfigError(
                        f"{key} {included}: services {', '.join(sorted(clash))} are "
                        "defined twice (Compose refuses this too)",
                        file=path, key="include",
                        hint="rename one, or use extends to build on an included service",
                    )  # fmt: skip
                combined = merge_documents(combined, other)
        return merge_documents(combined, document)

    def _project_interpolator(
        self, path: Path, key: str, spec: Mapping[str, Any], project_dir: Path
    ) -> Interpolator:
        named = spec.get("env_file")
        if named is None:
            files, required = [project_dir / ".env"], False
        else:
            names = named if isinstance(named, list) else [named]
            if not all(isinstance(n, str) for n in names):
                raise ConfigError(f"{key}.env_file: expected a path or a list of paths",
                                  file=path, key=f"{key}.env_file")  # fmt: skip
            files, required = [path.parent / n for n in names], True
        defaults, read = read_env_files(files, self.variables, required=required)
        if not read:
            return self.interpolator
        self.read_files.extend(p for p in read if p not in self.read_files)
        interpolator = Interpolator.over(
            self.variables, defaults, strict=self.interpolator.strict
        )
        self.interpolators.append(interpolator)
        return interpolator

    def _extends(self, path: Path, document: dict[str, Any], interpolator: Interpolator) -> None:
        services = document.get("services")
        if not isinstance(services, dict):
            return
        done: dict[str, Any] = {}
        for name in list(services):
            services[name] = self._resolve(path, services, str(name), done, [], interpolator)

    def _resolve(
        self, path: Path, services: dict[str, Any], name: str, done: dict[str, Any],
        chain: list[str], interpolator: Interpolator,
    ) -> Any:  # fmt: skip
        if name in done:
            return done[name]
        body = services.get(name)
        if not isinstance(body, dict) or "extends" not in body:
            done[name] = body
            return body
        key = f"services.{name}.extends"
        if name in chain:
            raise ConfigError(f"extends loops: {' -> '.join([*chain, name])}", file=path, key=key)
        ext = body.pop("extends")
        if isinstance(ext, str):
            ext = {"service": ext}
        if not isinstance(ext, dict) or not isinstance(ext.get("service"), str):
            raise ConfigError("extends needs a service name", file=path, key=key,
                              hint="extends: { service: NAME, file: OTHER.yml }")  # fmt: skip
        if ext.get("file"):
            other_path = path.parent / str(ext["file"])
            other = self.read(other_path, interpolator).get("services") or {}
            if ext["service"] not in other:
                raise ConfigError(
                    f"extends: no service {ext['service']!r} in {other_path}", file=path, key=key
                )
            base = copy.deepcopy(other[ext["service"]])
            base = _rebase_paths(base, other_path.parent, path.parent)
        else:
            if ext["service"] not in services:
                raise ConfigError(
                    f"extends: no service {ext['service']!r} in this file", file=path, key=key,
                    hint=f"services: {', '.join(map(str, services))}",
                )  # fmt: skip
            base = copy.deepcopy(
                self._resolve(path, services, ext["service"], done, [*chain, name], interpolator)
            )
        merged = merge_service(base if isinstance(base, dict) else {}, body)
        done[name] = merged
        return merged


def merge_documents(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Compose's merge of two files: services merged service by service, the rest by key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key == "services" and isinstance(value, dict):
            services = out.setdefault("services", {}) or {}
            out["services"] = services
            for name, body in value.items():
                existing = services.get(name)
                if isinstance(existing, dict) and isinstance(body, dict):
                    services[name] = merge_service(existing, body)
                else:
                    services[name] = copy.deepcopy(body)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_service(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        old = out.get(key)
        if key in REPLACED or old is None:
            out[key] = copy.deepcopy(value)
        elif key in MAPPINGS:
            out[key] = _merge_mapping(_as_mapping(key, old), _as_mapping(key, value))
        elif isinstance(old, list) and isinstance(value, list):
            out[key] = _merge_list(key, old, value)
        elif isinstance(old, dict) and isinstance(value, dict):
            out[key] = _merge_mapping(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _as_mapping(key: str, value: Any) -> Any:
    if isinstance(value, dict) or not isinstance(value, list):
        return value
    if key == "depends_on":
        return {str(v): {"condition": "service_started"} for v in value}
    out: dict[str, Any] = {}
    for item in value:
        name, sep, rest = str(item).partition("=")
        if key == "extra_hosts" and not sep:
            name, sep, rest = str(item).partition(":")
        out[name] = rest if sep else None
    return out


def _merge_mapping(old: Any, new: Any) -> Any:
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return copy.deepcopy(new)
    out = copy.deepcopy(old)
    for key, value in new.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _merge_mapping(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_list(key: str, old: list[Any], new: list[Any]) -> list[Any]:
    """Ports, volumes... add up; an entry for the same target (volumes) is replaced."""
    if key in ("volumes", "tmpfs", "devices"):
        def target(item: Any) -> str:
            if isinstance(item, dict):
                return str(item.get("target"))
            parts = str(item).split(":")
            return parts[1] if len(parts) > 1 else parts[0]

        kept = {target(i): i for i in old}
        kept.update({target(i): i for i in new})
        return [copy.deepcopy(v) for v in kept.values()]
    out = copy.deepcopy(old)
    for item in new:
        if item not in out:
            out.append(copy.deepcopy(item))
    return out


def _rebase_paths(body: Any, source_dir: Path, target_dir: Path) -> Any:
    """A service extended from another file keeps its relative paths meaning what they
    meant there (build context, env_file, bind mounts)."""
    if not isinstance(body, dict) or source_dir == target_dir:
        return body

    def rebase(value: str) -> str:
        if value.startswith(("./", "../")) or value == ".":
            moved = os.path.relpath(source_dir / value, target_dir)
            # still written as a relative path, so a volume stays a bind mount (not a name)
            return moved if moved.startswith("..") or moved == "." else f"./{moved}"
        return value

    build = body.get("build")
    if isinstance(build, str):
        body["build"] = rebase(build)
    elif isinstance(build, dict) and isinstance(build.get("context"), str):
        build["context"] = rebase(build["context"])
    env_file = body.get("env_file")
    if isinstance(env_file, str):
        body["env_file"] = rebase(env_file)
    elif isinstance(env_file, list):
        body["env_file"] = [
            rebase(e) if isinstance(e, str) else {**e, "path": rebase(str(e.get("path", "")))}
            for e in env_file
        ]
    volumes = body.get("volumes")
    if isinstance(volumes, list):
        out: list[Any] = []
        for v in volumes:
            if isinstance(v, str) and ":" in v:
                src, _, rest = v.partition(":")
                out.append(f"{rebase(src)}:{rest}")
            elif isinstance(v, dict) and isinstance(v.get("source"), str):
                out.append({**v, "source": rebase(v["source"])})
            else:
                out.append(v)
        body["volumes"] = out
    return body
