"""Throwaway hosts on one machine: Linux network namespaces on a bridge in the root namespace.

A multi-host test needs parties that reach each other only over a network, and a
link it can cut (``ip link set DEV down``) without touching any process. Each
host here is a network namespace with one veth link (``eth0`` inside) whose other
end is a port of a bridge in the root namespace; the bridge holds the subnet's
first address, so the root namespace (the test, the CLI) is one more host on the
LAN. Traffic stays on the bridge: nothing is routed to or from any other network.

Names carry the pid and a counter, so a leftover of a crashed run never collides
with a later one, and ``network`` deletes everything it made on the way out,
whatever happened inside. It needs root and the ``ip`` tool; ``unavailable``
says why a machine cannot make namespaces, for a test to skip with that reason.
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

IP_TIMEOUT = 60.0  # seconds one ``ip`` call may take on a loaded machine, not a timing target
MAX_IFNAME = 15  # the kernel's limit on an interface name
_runs = itertools.count()


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message carries its command line and stderr."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """One ``ip`` command; a failure raises with its stderr, unless ``check`` is False."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done


@dataclass(frozen=True)
class Host:
    """One namespace: its address on the LAN and the root-namespace end of its link."""

    name: str
    netns: str
    address: str
    link: str  # the bridge port; down means this host is cut off, its processes untouched

    @property
    def prefix(self) -> list[str]:
        """What runs a command on this host."""
        return ["ip", "netns", "exec", self.netns]


@dataclass
class Network:
    """The hosts and the bridge joining them; ``gateway`` is the root namespace's own address."""

    bridge: str
    gateway: str
    hosts: dict[str, Host] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def cut(self, name: str) -> None:
        """Take a host's link down: its packets go nowhere, as when a cable is pulled."""
        ip("link", "set", self.hosts[name].link, "down")

    def mend(self, name: str) -> None:
        ip("link", "set", self.hosts[name].link, "up")


def unavailable() -> str | None:
    """Why this machine cannot make namespaces and veth links, or None when it can (tried for real)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    probe = f"tango-probe-{os.getpid()}-{next(_runs)}"
    link = f"tgq{os.getpid()}"[:MAX_IFNAME]
    try:
        ip("netns", "add", probe)
        ip("link", "add", link, "type", "veth", "peer", "name", link + "p", "netns", probe)
        ip("link", "add", link + "b", "type", "bridge")
    except (NetnsError, OSError, subprocess.SubprocessError) as exc:
        return f"cannot make network namespaces here: {exc}"
    finally:
        for leftover in (link, link + "b"):
            ip("link", "del", leftover, check=False)
        ip("netns", "del", probe, check=False)
    return None


def free_subnet(start: int) -> str:
    """A 10.77.X.0/24 (as ``10.77.X``) that no root-namespace route uses yet, so that two runs side
    by side each get their own LAN."""
    routes = ip("-4", "route", "show", "table", "all").stdout + ip("-4", "addr").stdout
    for offset in range(250):
        third = (start + offset) % 250 + 1
        if f"10.77.{third}." not in routes:
            return f"10.77.{third}"
    raise NetnsError("no free 10.77.X.0/24 subnet for the test network")


@contextmanager
def network(names: Sequence[str]) -> Iterator[Network]:
    """Hosts ``names`` (each a namespace on a bridge), deleted on the way out even on failure."""
    pid, run = os.getpid(), next(_runs)
    base = f"tg{pid}-{run}"
    subnet = free_subnet(pid + run)
    net = Network(bridge=f"{base}b", gateway=f"{subnet}.1")
    made_netns: list[str] = []
    try:
        _make_bridge(net.bridge, net.gateway)
        for i, name in enumerate(names):
            host = Host(name, f"tango-{pid}-{run}-{name}", f"{subnet}.{i + 2}", f"{base}h{i}")
            made_netns.append(host.netns)
            _make_host(host, net.bridge, f"{base}p{i}")
            net.hosts[name] = host
        yield net
    finally:
        _teardown(net.bridge, [f"{base}h{i}" for i in range(len(names))], made_netns)


def _make_bridge(bridge: str, gateway: str) -> None:
    _check_name(bridge)
    ip("link", "add", bridge, "type", "bridge")
    ip("addr", "add", f"{gateway}/24", "dev", bridge)
    ip("link", "set", bridge, "up")


def _make_host(host: Host, bridge: str, peer: str) -> None:
    """A namespace with loopback up and ``eth0`` at ``host.address``, its other end on the bridge."""
    _check_name(host.link)
    _check_name(peer)
    ip("netns", "add", host.netns)
    ip("link", "add", host.link, "type", "veth", "peer", "name", peer, "netns", host.netns)
    ip("link", "set", host.link, "master", bridge)
    ip("link", "set", host.link, "up")
    inside = ("-n", host.netns)
    ip(*inside, "link", "set", peer, "name", "eth0")
    ip(*inside, "addr", "add", f"{host.address}/24", "dev", "eth0")
    ip(*inside, "link", "set", "eth0", "up")
    ip(*inside, "link", "set", "lo", "up")


def _teardown(bridge: str, links: list[str], namespaces: list[str]) -> None:
    """Delete every link (each takes its peer with it), the bridge and the namespaces; what
    cannot be deleted is named in a warning, never raised over the test's own outcome."""
    for link in [*links, bridge]:
        ip("link", "del", link, check=False)
    for netns in namespaces:
        ip("netns", "del", netns, check=False)
    left = [n for n in namespaces if n in ip("netns", "list", check=False).stdout.split()]
    left += [d for d in [*links, bridge] if ip("link", "show", d, check=False).returncode == 0]
    if left:
        warnings.warn(f"test network left behind: {', '.join(left)}", RuntimeWarning, stacklevel=2)


def _check_name(name: str) -> None:
    if len(name) > MAX_IFNAME:
        raise NetnsError(f"interface name {name!r} is longer than {MAX_IFNAME} characters")
