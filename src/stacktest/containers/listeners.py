"""Which of some processes' TCP listening sockets are bound beyond loopback (Linux).

A socket is found by its inode: ``/proc/PID/fd/*`` links to ``socket:[INODE]``, and
``/proc/PID/net/tcp`` (and ``tcp6``) lists the listening ones of the process's network
namespace with their addresses. Where ``/proc`` cannot be read (another user's process,
no ``/proc``), nothing is reported: the check is a guard, not a proof.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

LISTEN = "0A"


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _address(hex_address: str) -> tuple[str, int]:
    raw, port = hex_address.split(":")
    data = bytes.fromhex(raw)
    # /proc prints each 32-bit word in the host's (little-endian) order
    words = b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))
    return str(ipaddress.ip_address(words)), int(port, 16)


def listening(pid: int) -> list[tuple[str, int, str]]:
    """``(address, port, inode)`` of every TCP listening socket in ``pid``'s namespace."""
    found = []
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == LISTEN:
                address, port = _address(fields[1])
                found.append((address, port, fields[9]))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def beyond_loopback(pids: Iterable[int]) -> list[str]:
    """``address:port`` of each listening socket of these processes not on loopback."""
    out: list[str] = []
    for pid in pids:
        mine = _socket_inodes(pid)
        if not mine:
            continue
        for address, port, inode in listening(pid):
            if inode in mine and not is_loopback(address):
                shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
                if shown not in out:
                    out.append(shown)
    return out
