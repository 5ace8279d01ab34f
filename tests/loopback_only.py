"""Run a command in a network namespace whose only interface is loopback, and record every socket
it listens on or binds: ``unshare --net python -m tests.loopback_only --record F -- COMMAND ...``
(``in_loopback_namespace`` builds that line). Ray's servers listen on every interface they see;
here the only one is loopback, and the record shows what they opened."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
TABLES = ("tcp", "tcp6", "udp", "udp6")
TCP_LISTEN = "0A"


def in_loopback_namespace(command: list[str], record: Path) -> list[str]:
    user_namespace = [] if os.geteuid() == 0 else ["--map-root-user"]  # unprivileged: a user namespace as well
    return ["unshare", "--net", *user_namespace, sys.executable, "-m", "tests.loopback_only", "--record", str(record),
            "--", *command]


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, raw[::-1])}:{int(port, 16)}"
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))  # /proc prints each 32-bit word in host order
    return f"[{socket.inet_ntop(socket.AF_INET6, words)}]:{int(port, 16)}"


def open_sockets() -> set[str]:
    """Local addresses of this namespace's listening TCP sockets and bound UDP sockets."""
    found = set()
    for table in TABLES:
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if table.startswith("udp") or fields[3] == TCP_LISTEN:
                found.add(f"{table} {_address(fields[1])}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    _loopback_up()
    interfaces = [name for _, name in socket.if_nameindex()]
    seen: set[str] = set()
    child = subprocess.Popen(command)
    while child.poll() is None:
        seen |= open_sockets()
        time.sleep(0.2)
    args.record.write_text(json.dumps({"interfaces": interfaces, "sockets": sorted(seen)}))
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
