"""Reading compose values: images, ports, volumes, durations, healthcheck timing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

INITDB = "/docker-entrypoint-initdb.d"

#: image repository (last path part) -> (provider, container port)
IMAGES: dict[str, tuple[str, int]] = {
    "postgres": ("postgres", 5432),
    "postgresql": ("postgres", 5432),
    "postgis": ("postgres", 5432),
    "redis": ("redis", 6379),
    "redis-stack-server": ("redis", 6379),
    "valkey": ("valkey", 6379),
    "nats": ("nats", 4222),
    "memcached": ("memcached", 11211),
    "mariadb": ("mariadb", 3306),
    "nginx": ("nginx", 80),
    "rabbitmq": ("rabbitmq", 5672),
    "mysql": ("mariadb", 3306),
}


class Failing(Protocol):
    def fail(self, key: str, problem: str, hint: str | None = None) -> Any: ...


def literal(text: str) -> str:
    """``text`` as a stack-file value: braces are not references."""
    return text.replace("{", "{{").replace("}", "}}")


def stacktest_ext(body: Any) -> Mapping[str, Any]:
    ext = body.get("x-stacktest") if isinstance(body, dict) else None
    return ext if isinstance(ext, dict) else {}


def image_kind(image: Any) -> tuple[str, int] | None:
    if not isinstance(image, str):
        return None
    repository = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return IMAGES.get(repository)


def port_mapping(item: Any) -> tuple[int | None, int, str] | None:
    """(published host port or None, container port, host address) of a ``ports`` entry:
    ``"8000"``, ``"5432:5432"``, ``"127.0.0.1:5433:5432"``, ``"8000-8001:8000-8001/tcp"``
    (its first port), or the long form. None when it cannot be read."""
    if isinstance(item, dict):
        target, published = item.get("target"), item.get("published")
        address = str(item.get("host_ip") or "")
    else:
        text = str(item).split("/")[0]
        if text.startswith("["):  # [::1]:5432:5432
            address, _, text = text[1:].partition("]:")
        else:
            address = ""
        parts = text.split(":")
        if len(parts) == 3:
            address, published, target = parts
        elif len(parts) == 2:
            published, target = parts
        else:
            published, target = None, parts[0]
    first = [str(v).split("-")[0] if v is not None else None for v in (published, target)]
    if not (first[1] or "").isdigit() or (first[0] not in (None, "") and not first[0].isdigit()):
        return None
    host = int(first[0]) if first[0] else None
    return host, int(first[1] or 0), address


def replicas(body: Mapping[str, Any]) -> int:
    deploy = body.get("deploy")
    replicas = deploy.get("replicas", 1) if isinstance(deploy, dict) else 1
    return replicas if isinstance(replicas, int) else 1


def is_initdb(item: Any) -> bool:
    target = item.get("target", "") if isinstance(item, dict) else ([*str(item).split(":"), ""])[1]
    return str(target).startswith(INITDB)


def volume_text(item: Any) -> str:
    if isinstance(item, dict):
        return f"volume {item.get('source', '')}:{item.get('target', '')}"
    return f"volume {item}"


GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(key: str, value: Any, translator: Failing) -> float:
    """Compose's durations (Go's: ``1m30s``, ``500ms``, ``10s``) in seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    pos, total = 0, 0.0
    for match in GO_DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * GO_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        translator.fail(key, f"{value!r} is not a duration", "write it like 10s, 1m30s or 500ms")
    return total


def health_deadline(key: str, check: Mapping[str, Any], translator: Failing) -> float | None:
    """How long Compose waits before calling a service unhealthy: start_period, then
    retries checks of interval (each up to timeout). None when the file sets none of them."""
    if not any(k in check for k in ("interval", "timeout", "retries", "start_period")):
        return None

    def get(name: str, default: float) -> float:
        if name not in check:
            return default
        # 0 is "the default" to Compose (except start_period, where it is none)
        seconds = go_duration(f"{key}.healthcheck.{name}", check[name], translator)
        return seconds if seconds > 0 or name == "start_period" else default

    retries = check.get("retries", 3)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 1:
        translator.fail(f"{key}.healthcheck.retries", f"{retries!r} is not a positive number")
    each = get("interval", 30.0) + get("timeout", 30.0)
    return get("start_period", 0.0) + float(retries) * each


def volume_parts(item: Any) -> tuple[str, str, bool] | None:
    """(source, container target, read-only) of a ``volumes`` entry; None for an anonymous
    volume (a target only) or one that cannot be read."""
    if isinstance(item, dict):
        source, target = str(item.get("source") or ""), str(item.get("target") or "")
        read_only = bool(item.get("read_only"))
    else:
        parts = str(item).split(":")
        if len(parts) < 2:
            return None
        source, target = parts[0], parts[1]
        read_only = len(parts) > 2 and "ro" in parts[2].split(",")
    if not source or not target.startswith("/"):
        return None
    return source, target.rstrip("/") or "/", read_only


def tmpfs_targets(body: Mapping[str, Any]) -> list[str]:
    """The container paths a service mounts as tmpfs: ``tmpfs: /run`` or a list
    (``/run:size=64m``), and ``volumes`` entries of ``type: tmpfs``."""
    raw = body.get("tmpfs")
    items = raw if isinstance(raw, list) else [] if raw is None else [raw]
    targets = [str(item).split(":")[0] for item in items]
    for volume in body.get("volumes") or []:
        if isinstance(volume, dict) and volume.get("type") == "tmpfs" and volume.get("target"):
            targets.append(str(volume["target"]))
    return [t.rstrip("/") or "/" for t in targets if t.startswith("/")]


def tmpfs_name(service: str, target: str) -> str:
    """The run dir's name for one tmpfs mount: ``api`` + ``/run/app`` -> ``api-run_app``."""
    return f"{service}-{re.sub(r'[^A-Za-z0-9_-]+', '_', target.strip('/')) or 'root'}"


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))
