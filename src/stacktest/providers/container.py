"""A service run from an image by a container engine (``image = ...`` or ``build = ...``).

The instance's process is :mod:`stacktest.containers.runner`, which makes (or reuses)
the container, streams its output into the service log and exits with its exit code: to
the engine a container service is an instance like any other (readiness, logs, restart
policies, fault proxies on its edges). What only the engine can do goes through
:meth:`ContainerProvider.on_signal`: a paused service is the engine's pause, a killed one
the engine's kill. Containers share the host's network (docs/containers.md): they reach
native services, and each other, at 127.0.0.1 and by their service names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from stacktest.containers import reap
from stacktest.containers.engine import Engine, NoEngine, find_engine
from stacktest.containers.runner import exposed, exposed_message
from stacktest.errors import ServiceRefused, ServiceStartError
from stacktest.providers.base import Instance, Launch, Provider
from stacktest.providers.process import ProcessProvider, service_environment
from stacktest.spec.model import ReadyCheck

#: Seconds an engine may take to run an exec check on top of the check's own timeout.
EXEC_OVERHEAD = 5.0


def container_name(instance: Instance) -> str:
    """Unique per run and instance (``stacktest-RUNID-api.2``), as the engine allows."""
    return f"stacktest-{instance.run_id}-{instance.name}".replace("/", "-")


class ContainerProvider(Provider):
    kind = "container"
    #: Without ``ready``, the image's HEALTHCHECK decides readiness.
    image_healthcheck = True

    def plan(self, instance: Instance) -> None:
        instance.fields.update(
            host=instance.host,
            port=str(instance.port),
            url=f"http://{instance.host}:{instance.port}",
            replica=str(instance.replica),
            container=container_name(instance),
        )

    # -- the engine ------------------------------------------------------------------------
    def engine(self, instance: Instance) -> Engine:
        try:
            return find_engine(need=f"services.{instance.spec.name} runs as a container")
        except NoEngine as exc:
            raise ServiceStartError(instance.name, str(exc)) from None

    async def prepare(self, instance: Instance) -> Launch:
        engine = await asyncio.to_thread(self.engine, instance)
        reap.record_engine(instance.run_dir, engine.host)  # before anything exists in it
        image = await asyncio.to_thread(self._image, engine, instance)
        instance.scratch["container"] = {
            "name": container_name(instance), "image": image["name"], "id": image["id"],
            "digests": image["digests"], "engine": engine.describe(),
        }  # fmt: skip
        test = image["healthcheck"] if self.image_healthcheck else None
        if instance.ready is None and test and test[0] in ("CMD", "CMD-SHELL") and test[1:]:
            # no `ready` of its own: the image's HEALTHCHECK, run inside it as the engine would
            shell = test[0] == "CMD-SHELL"
            instance.ready = ReadyCheck("command", argv=tuple(test[1:]), shell=shell,
                                        attempt_timeout=5.0)  # fmt: skip
            self._log(instance, f"stacktest: ready when the image's HEALTHCHECK passes: {test}")
        instance.data_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "host": engine.host,
            "name": container_name(instance),
            "service": instance.name,
            "image": image["id"],
            "image_name": image["name"],
            "command": list(instance.command) or None,
            "entrypoint": instance.options.get("entrypoint"),
            "env": dict(instance.env),
            "labels": {
                reap.LABEL_RUN_DIR: str(instance.run_dir),
                reap.LABEL_RUN_ID: instance.run_id,
                reap.LABEL_SERVICE: instance.name,
            },
            # other services by name, as on a compose network (all on this host's loopback)
            "extra_hosts": {name: "127.0.0.1" for name in instance.scratch.get("peers", [])},
            "stop_signal": instance.spec.stop_signal.name,
            # the runner must finish (and say why) before the engine's own SIGKILL of it
            "stop_timeout": max(int(instance.spec.stop_timeout) - 1, 0),
            "working_dir": instance.options.get("working_dir"),
            "volumes": instance.options.get("volumes"),
            "user": instance.options.get("user"),
        }
        pid_file = instance.data_dir / "container.pid"
        pid_file.unlink(missing_ok=True)
        spec["pid_file"] = str(pid_file)
        path = instance.data_dir / "container.json"
        path.write_text(json.dumps(spec))
        env = service_environment({})
        return Launch([sys.executable, "-m", "stacktest.containers.runner", str(path)], env,
                      instance.data_dir)  # fmt: skip

    def _image(self, engine: Engine, instance: Instance) -> dict[str, Any]:
        """The image to run, built or pulled if needed; its id and digests."""
        import docker.errors

        client = engine.client(timeout=600)
        options = instance.options
        try:
            if options.get("build"):
                image = self._build(client, instance, options["build"])
            else:
                name = str(options["image"])
                try:
                    image = client.images.get(name)
                except docker.errors.ImageNotFound:
                    image = self._pull(client, instance, name)
            config = image.attrs.get("Config") or {}
            name = options.get("image") or (image.tags[:1] or [image.id])[0]
            return {"name": name, "id": image.id,
                    "digests": list(image.attrs.get("RepoDigests") or []),
                    "healthcheck": (config.get("Healthcheck") or {}).get("Test")}  # fmt: skip
        finally:
            client.close()

    def _log(self, instance: Instance, text: str) -> None:
        instance.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(instance.log_path, "a") as log:
            log.write(text if text.endswith("\n") else text + "\n")

    def _pull(self, client: Any, instance: Instance, name: str) -> Any:
        import docker.errors

        tagged = ":" in name.rsplit("/", 1)[-1]
        repository, _, tag = name.rpartition(":") if tagged else (name, "", "")
        self._log(instance, f"stacktest: pulling {name}")
        try:
            for line in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                status = line.get("status")
                if status and "progress" not in line:
                    self._log(instance, f"stacktest: pull: {line.get('id', '')} {status}".strip())
            return client.images.get(name)
        except docker.errors.DockerException as exc:
            raise ServiceStartError(
                instance.name,
                f"image {name!r} is not in the engine and could not be pulled: "
                f"{str(exc).splitlines()[0][:300]}",
                hint="reach a registry (docker login, a mirror), or make the image locally "
                "(docker build / docker load / docker import) and run again",
            ) from None

    def _build(self, client: Any, instance: Instance, build: dict[str, Any]) -> Any:
        import docker.errors

        own = f"stacktest/{instance.spec.name}:{instance.run_id}"
        tag = str(instance.options.get("image") or own)
        self._log(instance, f"stacktest: building {tag} from {build['context']}")
        try:
            image_id = None
            for line in client.api.build(
                path=build["context"], dockerfile=build.get("dockerfile", "Dockerfile"),
                buildargs=build.get("args") or None, target=build.get("target"), tag=tag,
                rm=True, forcerm=True, decode=True, network_mode="host",
            ):  # fmt: skip
                if "stream" in line:
                    self._log(instance, "build: " + str(line["stream"]).rstrip("\n"))
                if "aux" in line and "ID" in line["aux"]:
                    image_id = line["aux"]["ID"]
                if "error" in line:
                    raise ServiceStartError(
                        instance.name,
                        f"building its image failed: {line['error'].strip()}",
                        log_path=instance.log_path,
                        hint=f"the build log is in {instance.log_path}; fix the Dockerfile "
                        f"in {build['context']}",
                    )
            return client.images.get(image_id or tag)
        except docker.errors.DockerException as exc:
            raise ServiceStartError(
                instance.name,
                f"building its image failed: {str(exc).splitlines()[0][:300]}",
                hint=f"check services.{instance.spec.name}.build",
            ) from None

    # -- readiness ---------------------------------------------------------------------------
    async def probe(self, instance: Instance) -> bool:
        check = instance.ready
        if check is None or check.kind != "command":
            ok = await ProcessProvider().probe(instance)
        else:
            argv = ["/bin/sh", "-c", check.argv[0]] if check.shell else list(check.argv)
            # the engine's own time comes on top of the check's (an exec is a few requests);
            # the request itself times out too, so no thread is left waiting on the engine
            allowance = check.attempt_timeout + EXEC_OVERHEAD
            ok = await asyncio.wait_for(asyncio.to_thread(self._exec, instance, argv, allowance),
                                        allowance + 1)  # fmt: skip
        if ok:
            await self.refuse_if_exposed(instance)
        return ok

    async def refuse_if_exposed(self, instance: Instance) -> None:
        """Never ready while listening beyond loopback (the runner watches after)."""
        found = await asyncio.to_thread(self._exposed, instance)
        if found:
            self._log(instance, "stacktest: " + exposed_message(instance.name, found))
            await asyncio.to_thread(self._act, instance, "kill")
            raise ServiceRefused(instance.name, exposed_message(instance.name, found))

    def _exposed(self, instance: Instance) -> list[str]:
        client = self.engine(instance).client(timeout=30)
        try:
            return exposed(client.containers.get(container_name(instance)))
        except Exception:
            return []
        finally:
            client.close()

    def _exec(self, instance: Instance, argv: list[str], timeout: float) -> bool:
        """The check inside the container (``docker exec``), as the image's healthcheck."""
        import docker.errors

        client = self.engine(instance).client(timeout=timeout)
        try:
            container = client.containers.get(container_name(instance))
            if container.status != "running":
                return False
            code, _ = container.exec_run(argv, environment=dict(instance.env))
            return bool(code == 0)
        except docker.errors.NotFound:
            return False
        except Exception as exc:  # the request timed out (requests' own error)
            raise TimeoutError(f"the engine did not run the check within {timeout:g}s") from exc
        finally:
            client.close()

    def resource_root(self, instance: Instance, pid: int) -> int:
        """The container's first process (its processes are the engine's children, not the
        runner's): CPU and memory of a container service are its own."""
        try:
            return int((instance.data_dir / "container.pid").read_text())
        except (OSError, ValueError):
            return pid

    # -- what only the engine can do ----------------------------------------------------
    async def on_signal(self, instance: Instance, sig: int) -> None:
        """Before the runner's group gets ``sig``: the engine pauses, resumes or kills the
        container (a signal to the runner alone would not reach it)."""
        action = {signal.SIGSTOP: "pause", signal.SIGCONT: "unpause", signal.SIGKILL: "kill"}
        name = action.get(signal.Signals(sig))
        if name is None:
            return  # SIGTERM and the rest: the runner stops the container itself
        await asyncio.to_thread(self._act, instance, name)

    def _act(self, instance: Instance, action: str) -> None:
        import docker.errors

        client = self.engine(instance).client(timeout=30)
        try:
            container = client.containers.get(container_name(instance))
            with contextlib.suppress(docker.errors.APIError):  # (not running: nothing to do)
                getattr(container, action)()
        except docker.errors.NotFound:
            pass
        finally:
            client.close()

    async def cleanup(self, instance: Instance) -> None:
        """The stack ends: its container goes, with its anonymous volumes."""
        await asyncio.to_thread(self._remove, instance)

    async def discard_data(self, instance: Instance) -> None:
        await asyncio.to_thread(self._remove, instance)  # the next start makes a fresh one
        await super().discard_data(instance)

    def _remove(self, instance: Instance) -> None:
        import docker.errors

        try:
            client = find_engine().client(timeout=30)
        except NoEngine:
            return
        try:
            client.containers.get(container_name(instance)).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        finally:
            client.close()
