"""What each kind of service accepts and exposes, as data.

``OPTIONS`` lists the provider-specific keys of a ``[services.NAME]`` table with
their types; ``FIELDS`` lists what ``{service.field}`` references may name.
"""

from __future__ import annotations

from typing import Any

#: Keys every service accepts.
COMMON_KEYS = frozenset(
    {
        "use",
        "env",
        "depends_on",
        "stop_signal",
        "stop_timeout",
        "start_timeout",
        "restart",
        "max_restarts",
        "port",
        "backend",
    }
)

#: Keys only a ``command`` service accepts.
PROCESS_KEYS = frozenset({"command", "shell", "cwd", "replicas", "ready"})

#: Provider-specific keys: name -> (accepted python types, description for errors).
OPTIONS: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "postgres": {
        "databases": ((list,), "a list of database names"),
        "user": ((str,), "a role name"),
        "password": ((str,), "a string"),
        "init": ((list, str), "a list of SQL file paths"),
        "initdb": ((list, str), "a list of init scripts or directories (the image's initdb.d)"),
        "initdb_args": ((list,), "a list of extra initdb arguments"),
        "host_auth_method": ((str,), "scram-sha-256, md5, password or trust"),
        "waldir": ((bool,), "true: the WAL in a directory of its own (POSTGRES_INITDB_WALDIR)"),
        "bin_dir": ((str,), "a directory holding postgres and initdb"),
        "settings": ((dict,), "a table of postgresql.conf settings"),
        "tmpfs": ((bool, str), 'true, false or "auto"'),
        "version": ((str, int, float), 'the server version to run, e.g. "16" (an image tag)'),
    },
    "valkey": {
        "password": ((str, bool), "a string, or true to generate one"),
        "bin_dir": ((str,), "a directory holding valkey-server"),
        "settings": ((dict,), "a table of server config settings"),
        "persistence": ((bool,), "true or false"),
        "config": ((str,), "a server config file (redis.conf / valkey.conf)"),
        "sentinel": ((bool,), "true: run as a sentinel; config is its sentinel.conf"),
        "addresses": ((dict,), "services' addresses in a sentinel.conf -> theirs "
                      '({ "primary 6379" = "{primary.host} {primary.port}" })'),
        "version": ((str, int, float), 'the server version to run, e.g. "16" (an image tag)'),
    },
    "nats": {
        "jetstream": ((bool,), "true or false"),
        "bin_dir": ((str,), "a directory holding nats-server"),
        "args": ((list,), "a list of extra nats-server arguments"),
        "config": ((str,), "a nats-server config file"),
        "version": ((str, int, float), 'the server version to run, e.g. "16" (an image tag)'),
    },
}
OPTIONS["memcached"] = {
    "args": ((list,), "a list of memcached arguments (-m 64, -c 1024, -I 2m ...)"),
    "bin_dir": ((str,), "a directory holding memcached"),
    "version": ((str, int, float), 'the server version to run, e.g. "1.6"'),
}
OPTIONS["mariadb"] = {
    "databases": ((list,), "a list of database names"),
    "user": ((str,), "a user name (root: the root account)"),
    "password": ((str,), "the user's password (generated per run when not given)"),
    "root_password": ((str,), "root's password (generated per run when not given)"),
    "initdb": ((list, str), "a list of init scripts or directories (the image's initdb.d)"),
    "settings": ((dict,), "a table of server variables"),
    "args": ((list,), "a list of extra mariadbd arguments"),
    "config": ((str,), "a my.cnf read after stacktest's defaults (its values win)"),
    "conf_d": ((list, str), "option files or directories of .cnf (the image's conf.d)"),
    "timezones": ((bool,), "true: load the system's time zones (CONVERT_TZ by name)"),
    "bin_dir": ((str,), "a directory holding mariadbd"),
    "version": ((str, int, float), 'the server version to run, e.g. "10.11"'),
}
OPTIONS["nginx"] = {
    "config": ((str,), "an nginx.conf (its whole configuration)"),
    "conf_d": ((list, str), "files or directories of server blocks (the image's conf.d)"),
    "templates": ((list, str), "*.template files or directories, rendered with env into conf.d"),
    "root": ((str,), "a directory served as / (without config or conf_d)"),
    "listen": ((int,), "the port the configuration listens on for the service's port (80)"),
    "mounts": ((dict,), "container paths the configuration names -> files here"),
    "addresses": ((dict,), 'other services\' addresses in it -> theirs ({ "api:8000" = '
                  '"{api.host}:{api.port}" })'),
    "bin_dir": ((str,), "a directory holding nginx"),
    "version": ((str, int, float), 'the server version to run, e.g. "1.22"'),
}
OPTIONS["rabbitmq"] = {
    "user": ((str,), "the default user (guest)"),
    "password": ((str,), "its password (generated per run when not given)"),
    "vhost": ((str,), "the default vhost (/)"),
    "management": ((bool,), "true: the management plugin and its HTTP API"),
    "plugins": ((list,), "plugins to enable (rabbitmq_shovel ...)"),
    "config": ((str,), "a rabbitmq.conf read first"),
    "bin_dir": ((str,), "a directory holding rabbitmq-server"),
    "version": ((str, int, float), 'the server version to run, e.g. "3.10"'),
}
#: A service run from an image by a container engine (docs/containers.md).
OPTIONS["container"] = {
    "build": ((dict, str), "a directory, or { context, dockerfile, args, target }"),
    "entrypoint": ((list,), "the image's entrypoint, replaced (a list of strings)"),
    "user": ((str,), "the user the container runs as (name or uid[:gid])"),
    "working_dir": ((str,), "the working directory inside the container"),
    "volumes": ((list,), 'mounts: "HOST:CONTAINER[:ro]" (HOST relative to the stack file)'),
}
#: Built-in servers that can run from their image (``backend = "container"``).
CONTAINER_KINDS = ("nats", "valkey", "redis")
#: Keys of a container service's ``build`` table.
BUILD_KEYS = frozenset({"context", "dockerfile", "args", "target"})
for _options in OPTIONS.values():  # what a compose file's service stood for (messages)
    _options["image"] = ((str,), "the image a compose file named")
OPTIONS["redis"] = OPTIONS["valkey"]

_COMMON_FIELDS = frozenset({"name", "host", "port", "url", "run_dir", "data_dir"})

#: Fields a reference ``{service.field}`` may name, per kind of service.
FIELDS: dict[str, frozenset[str]] = {
    "process": _COMMON_FIELDS | {"replica"},
    "container": _COMMON_FIELDS | {"replica", "container"},
    "postgres": _COMMON_FIELDS | {"user", "password", "database", "socket_dir"},
    "valkey": _COMMON_FIELDS | {"password"},
    "redis": _COMMON_FIELDS | {"password"},
    "nats": _COMMON_FIELDS | {"monitor_port", "monitor_url", "cluster_port"},
    "memcached": _COMMON_FIELDS,
    "nginx": _COMMON_FIELDS,
    "rabbitmq": _COMMON_FIELDS | {"user", "password", "vhost", "management_port",
                                  "management_url"},
    "mariadb": _COMMON_FIELDS | {"user", "password", "root_password", "database", "socket",
                                 "client"},
}

#: A copy of a Postgres service's first database as its ``initdb`` scripts left it, made
#: with the cached data directory: per-test databases (pg_database) are copies of it, as
#: apps connect to the original and a template must have no connections.
INITDB_TEMPLATE = "stacktest_initdb"

#: Fields that hold secrets: redacted in ``config``, ``status`` and logs.
SECRET_FIELDS = frozenset({"password", "root_password"})


def type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
