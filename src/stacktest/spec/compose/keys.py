"""Compose's keys, and what stacktest does with each one it does not honour as written.

The translation reads these to write its notes (``stacktest config``'s ``not_honoured``);
docs/compose.md has the same table for people.
"""

from __future__ import annotations

TOP_LEVEL = {"version", "name", "services", "networks", "volumes", "secrets", "configs"}
IGNORED_TOP_LEVEL = {
    "networks": "ignored: every service is on loopback, reached by its address",
    "volumes": "a named volume a local process uses is RUN_DIR/volumes/NAME (kept across runs, "
    "`down -v` removes it); a built-in server's data volume is not used",
    "secrets": "ignored: pass secrets through environment or env_file",
    "configs": "ignored: a local process reads its config files where they are",
}
#: Keys the translation uses as written (the others get a note each).
ALWAYS_HONOURED = {"environment", "env_file", "depends_on", "restart", "stop_signal", "expose",
                   "stop_grace_period", "profiles", "build", "extends"}  # fmt: skip
SERVICE_KEYS = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup",
    "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
    "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus",
    "cpuset", "credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules",
    "devices", "dns", "dns_opt", "dns_search", "domainname", "driver_opts", "entrypoint",
    "env_file", "environment", "expose", "extends", "external_links", "extra_hosts",
    "gpus", "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation",
    "labels", "label_file", "links", "logging", "mac_address", "mem_limit", "mem_reservation",
    "mem_swappiness", "memswap_limit", "network_mode", "networks", "oom_kill_disable",
    "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start", "pre_stop",
    "privileged", "profiles", "pull_policy", "read_only", "restart", "runtime", "scale",
    "secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal",
    "storage_opt", "sysctls", "tmpfs", "tty", "ulimits", "user", "userns_mode", "uts",
    "volumes", "volumes_from", "working_dir",
}  # fmt: skip
IGNORED_REASONS = {
    "networks": "every service is on loopback",
    "network_mode": "every service is on loopback",
    "container_name": "services are named by the compose file",
    "hostname": "other services' names are rewritten to 127.0.0.1 where they appear",
    "user": "services run as the user running stacktest",
    "working_dir": "set x-stacktest.cwd for a local process",
    "entrypoint": "set x-stacktest.command for a local process",
    "labels": "metadata for a container engine",
}
