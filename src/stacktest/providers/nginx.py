"""nginx: the system's ``nginx`` (no PyPI wheel ships one), with the configuration the
official image would have, made to run as a local process.

The configuration is the user's ``nginx.conf`` (``config``), or the image's own shape: an
``http`` block that includes ``conf_d`` (the files of ``/etc/nginx/conf.d``) or, without any,
a server answering from ``root``. Then, in a copy in the run directory:

- ``listen 80`` (the main port, or ``listen`` as ``port``) becomes 127.0.0.1 at the
  service's port; other ``listen`` lines are said (not published) and left out;
- ``pid``, ``error_log``, ``access_log`` files and the temp paths are the run's (logs go to
  the service's log); ``daemon`` is off, ``user`` is dropped unless stacktest runs as root;
- ``include`` of a file the image ships (``mime.types``...) is the installed nginx's copy;
- addresses of other services (``proxy_pass http://api:8000``) are theirs (``addresses``:
  ``{"api:8000": "{api.host}:{api.port}"}``, rendered at plan); written without a port
  (``proxy_pass http://api;``, ``server api;``) they mean port 80, rewritten when 80 is the
  service's port.

Readiness: an HTTP answer, any status, on the port.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stacktest.providers import binaries
from stacktest.providers.base import BinaryReport, Instance, Launch, Provider
from stacktest.providers.probes import http_status
from stacktest.spec.model import ServiceSpec

INSTALL_HINT = "install nginx: apt install nginx (brew install nginx)"
SYSTEM_DIRS = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin",
               "/opt/homebrew/bin", "/usr/local/nginx/sbin"]  # fmt: skip
#: Where an installed nginx keeps the files the image ships (mime.types, fastcgi_params...).
SHARED_CONF_DIRS = ["/etc/nginx", "/usr/local/etc/nginx", "/opt/homebrew/etc/nginx",
                    "/usr/local/nginx/conf"]  # fmt: skip
IMAGE_CONF_DIR = "/etc/nginx"
DEFAULT_SERVER = """server {{
    listen 80;
    location / {{ root {root}; index index.html index.htm; }}
}}
"""


def find_server(explicit: str | None = None, version: str | None = None) -> tuple[Path, list[str]]:
    search, found = _search(explicit)
    if not found:
        raise search.fail(INSTALL_HINT)
    return binaries.choose(found, version, flag="-v")[0], search.looked_in


def _search(explicit: str | None) -> tuple[binaries.Search, list[Path]]:
    return binaries.find_all(["nginx"], explicit, [(map(Path, SYSTEM_DIRS), "system")])


def shared_conf_dir() -> Path | None:
    return next((Path(d) for d in SHARED_CONF_DIRS if (Path(d) / "mime.types").is_file()), None)


class Rewriter:
    """One configuration text, made to run here (see the module's docstring)."""

    def __init__(self, instance: Instance, main_port: int, scratch: Path) -> None:
        self.instance = instance
        self.main_port = main_port
        self.scratch = scratch
        self.mounts = {str(k): str(v) for k, v in instance.spec.options.get("mounts", {}).items()}
        self.addresses = (instance.options or instance.spec.options).get("addresses", {})
        self.dropped: list[str] = []

    def host_path(self, path: str) -> str:
        for target, host in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            if path == target or path.startswith(target.rstrip("/") + "/"):
                return host + path[len(target.rstrip("/")) :]
        if path.startswith(IMAGE_CONF_DIR + "/"):
            shared = shared_conf_dir()
            if shared is not None:
                return str(shared) + path[len(IMAGE_CONF_DIR) :]
        return path

    def text(self, text: str) -> str:
        out = []
        for line in text.splitlines():
            out.append(self.line(line))
        text = "\n".join(out) + "\n"
        for address, local in self.addresses.items():
            text = re.sub(rf"(?<![\w.-]){re.escape(address)}(?![\w.:-])", local, text)
        return text

    def line(self, line: str) -> str:
        stripped = line.strip()
        directive = stripped.split(None, 1)[0].rstrip(";") if stripped else ""
        value = stripped[len(directive) :].strip().rstrip(";").strip()
        indent = line[: len(line) - len(line.lstrip())]
        if directive == "listen" and value.startswith("["):  # IPv6: 127.0.0.1 is enough
            return f"{indent}# stacktest: IPv6, not here: {stripped}"
        if directive == "listen":
            port = re.search(r"(?:^|:)(\d+)(?:\s|$)", value)
            if port and int(port.group(1)) == self.main_port:
                rest = re.sub(r"^\S+", "", value)  # (default_server, ssl... kept)
                return f"{indent}listen {self.instance.host}:{self.instance.port}{rest};"
            self.dropped.append(stripped)
            return f"{indent}# stacktest: not published here: {stripped}"
        if directive == "user" and os.geteuid() == 0:  # (nginx's user is not on this machine)
            return f"{indent}user root;  # stacktest: was {stripped}"
        if directive in ("pid", "daemon", "user"):
            return f"{indent}# stacktest: {stripped}"
        if directive == "error_log":
            return f"{indent}error_log stderr{self.level(value)};"
        if directive == "access_log" and not value.startswith("off"):
            return f"{indent}access_log /dev/stdout{self.format(value)};"
        if directive == "include" or directive in ("root", "alias"):
            target = self.host_path(value.strip("'\""))
            return f"{indent}{directive} {target};"
        if directive.endswith("_temp_path"):
            return f"{indent}{directive} {self.scratch / directive};"
        return line

    @staticmethod
    def level(value: str) -> str:
        parts = value.split()
        return f" {parts[1]}" if len(parts) > 1 else ""

    @staticmethod
    def format(value: str) -> str:
        parts = value.split()
        return f" {' '.join(parts[1:])}" if len(parts) > 1 else ""


class NginxProvider(Provider):
    kind = "nginx"

    def plan(self, instance: Instance) -> None:
        instance.fields.update(
            host=instance.host, port=str(instance.port),
            url=f"http://{instance.host}:{instance.port}",
        )  # fmt: skip

    async def prepare(self, instance: Instance) -> Launch:
        options = instance.spec.options
        server, _ = find_server(options.get("bin_dir"), options.get("version"))
        instance.scratch["server"] = binaries.label(server, "nginx", flag="-v")
        scratch = instance.data_dir
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (scratch / f"{sub}_temp_path").mkdir(parents=True, exist_ok=True)
        rendered = self._render_templates(instance, scratch / "conf.d")
        rewriter = Rewriter(instance, int(options.get("listen", 80)), scratch)
        if rendered:  # an nginx.conf that includes /etc/nginx/conf.d/*.conf finds them
            rewriter.mounts.setdefault(IMAGE_CONF_DIR + "/conf.d", str(scratch / "conf.d"))
        instance.scratch["templates"] = [str(p) for p in rendered]
        conf = scratch / "nginx.conf"
        conf.write_text(self._config(instance, rewriter))
        instance.scratch["dropped"] = "\n".join(rewriter.dropped)
        argv = [str(server), "-c", str(conf), "-p", str(scratch), "-e", "stderr",
                "-g", f"daemon off; pid {scratch / 'nginx.pid'};"]  # fmt: skip
        return Launch(argv=argv, env={**os.environ, **instance.env}, cwd=scratch)

    def _config(self, instance: Instance, rewriter: Rewriter) -> str:
        options = instance.spec.options
        if options.get("config"):
            return rewriter.text(Path(options["config"]).read_text(encoding="utf-8"))
        shared = shared_conf_dir()
        parts = [
            # as root, workers run as root: `nobody` could not read the run's files
            "user root;" if os.geteuid() == 0 else "",
            "worker_processes 1;", "events { worker_connections 512; }", "http {",
            f"    include {shared / 'mime.types'};" if shared else "",
            "    default_type application/octet-stream;", "    access_log /dev/stdout;",
            *[f"    {d} {rewriter.scratch / d};" for d in (
                "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path",
                "uwsgi_temp_path", "scgi_temp_path")],
        ]  # fmt: skip
        files: list[Path] = []
        for entry in map(Path, options.get("conf_d", [])):
            files += sorted(entry.glob("*.conf")) if entry.is_dir() else [entry]
        files += [Path(p) for p in instance.scratch.get("templates", [])]
        if files:
            body = "".join(rewriter.text(f.read_text(encoding="utf-8")) for f in files)
        else:
            root = options.get("root") or str(_default_html())
            body = rewriter.text(DEFAULT_SERVER.format(root=root))
        return "\n".join([*parts, body, "}"]) + "\n"

    def _render_templates(self, instance: Instance, target: Path) -> list[Path]:
        """The image's ``/etc/nginx/templates/*.template``: ``${VAR}`` and ``$VAR`` of the
        variables the service's environment sets (nginx's own ``$host`` stays), written to
        ``conf.d`` without the suffix, as its entrypoint does with envsubst."""
        files: list[Path] = []
        for entry in map(Path, instance.spec.options.get("templates", [])):
            files += sorted(entry.rglob("*.template")) if entry.is_dir() else [entry]
        rendered = []
        env = instance.env
        pattern = re.compile(r"\$\{(\w+)\}|\$(\w+)")
        for template in files:
            text = pattern.sub(
                lambda m: env.get(m[1] or m[2], m[0]), template.read_text(encoding="utf-8")
            )
            out = target / template.name.removesuffix(".template")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            rendered.append(out)
        return rendered

    async def probe(self, instance: Instance) -> bool:
        return await http_status(instance.fields["url"] + "/", timeout=1.0) is not None

    def client_env(self, instance: Instance) -> dict[str, str]:
        return {}

    def server_note(self, spec: ServiceSpec) -> str | None:
        try:
            _, found = _search(spec.options.get("bin_dir"))
        except Exception:
            return None  # the start says what is missing
        if not found:
            return f"nginx is not installed: {INSTALL_HINT}"
        return binaries.mismatch_note("nginx", found, spec.options.get("version"),
                                      "install it, or set bin_dir", flag="-v")  # fmt: skip

    def doctor(self) -> list[BinaryReport]:
        try:
            path, looked = find_server()
        except Exception as exc:
            looked_in = tuple(getattr(exc, "looked_in", ()))
            return [BinaryReport("nginx", "nginx", None, None, looked_in, INSTALL_HINT)]
        return [BinaryReport("nginx", "nginx", path, binaries.version_of(path, "-v"),
                             tuple(looked), INSTALL_HINT)]  # fmt: skip


def _default_html() -> Path:
    for candidate in ("/usr/share/nginx/html", "/var/www/html", "/usr/local/nginx/html"):
        if Path(candidate).is_dir():
            return Path(candidate)
    return Path("/usr/share/nginx/html")
