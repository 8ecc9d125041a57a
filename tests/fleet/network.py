"""Separate hosts on one machine: Linux network namespaces joined by bridges.

``network`` makes a *services* namespace holding two bridges, one per network: the database network
(PostgreSQL, the carrier stub) and the broker network (Redis). Each worker node is a namespace of its
own with one veth link into each network, and the machine's own namespace gets a link into each too,
so that the test process reaches the services. Nothing routes further: the addresses are private
/24s that no interface of the machine uses, and the namespaces have no default route, so traffic stays
between the namespaces made here (and this machine's ends of the host links).

A node can then be cut off (its bridge ports down: packets vanish and TCP connections stay open, as
when a network splits), or lose the broker alone (its broker port down), without touching the other
nodes or the machine's own PostgreSQL and Redis. Two networks rather than a packet filter because the
kernel these tests run on has no tc actions, netem or netfilter to drop one service's packets with.

Needs root and ``ip`` (iproute2). ``network_unavailable()`` says why not, for the tests to fail (CI) or
skip on.
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SERVICES_INDEX = 1
HOST_INDEX = 254
FIRST_NODE_INDEX = 10
# The two networks: what a node reaches over each, and the bridge that carries it.
DATABASE, BROKER = "database", "broker"
BRIDGES = {DATABASE: "br0", BROKER: "br1"}
LINK_LETTERS = {DATABASE: "d", BROKER: "m"}


def ip(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *args] if namespace is None else ["ip", "netns", "exec", namespace, "ip", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` exited {done.returncode}: {done.stderr.strip()}")
    return done


def network_unavailable() -> str | None:
    """None if namespaces can be made here; otherwise why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    name = f"whprobe{secrets.token_hex(3)}"
    made = ip("netns", "add", name, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    ip("netns", "del", name, check=False)
    return None


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` 10.x.y.0/24s that no interface of this machine is in, picked at random so that two
    test sessions at once do not collide."""
    used = [
        ipaddress.ip_interface(line.split()[3]).network
        for line in ip("-4", "-o", "addr").stdout.splitlines()
    ]
    picked: list[ipaddress.IPv4Network] = []
    for _ in range(500):
        candidate = ipaddress.ip_network(f"10.{random.randint(160, 250)}.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(network) for network in used + picked):
            picked.append(candidate)
            if len(picked) == count:
                return picked
    raise RuntimeError("no free 10.x.y.0/24 subnets found for the test networks")


@dataclass
class Node:
    """A host of its own: a namespace with a link into each network."""

    network: "Network"
    name: str
    namespace: str
    index: int
    ports: dict[str, str]  # network -> the bridge's end of the node's link (in the services namespace)

    def exec_prefix(self) -> list[str]:
        """Put this before a command to run it on this node."""
        return ["ip", "netns", "exec", self.namespace]

    def address(self, network: str = DATABASE) -> str:
        return self.network.address(network, self.index)

    def cut(self, *networks: str) -> None:
        """Unplug the node from ``networks`` (all by default): its packets go nowhere and nobody's
        reach it, but its connections stay open, as when a network splits."""
        for name in networks or tuple(self.ports):
            ip("link", "set", self.ports[name], "down", namespace=self.network.services)

    def reconnect(self, *networks: str) -> None:
        for name in networks or tuple(self.ports):
            ip("link", "set", self.ports[name], "up", namespace=self.network.services)


@dataclass
class Network:
    prefix: str
    subnets: dict[str, ipaddress.IPv4Network]
    services: str  # the services namespace, which holds the bridges
    host_links: list[str] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)

    def address(self, network: str, index: int) -> str:
        return str(self.subnets[network].network_address + index)

    def services_address(self, network: str = DATABASE) -> str:
        """Where the services host answers on ``network``: PostgreSQL on the database network, Redis
        on the broker network."""
        return self.address(network, SERVICES_INDEX)

    def services_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.services]

    def _link(self, namespace: str | None, inside: str, port: str, network: str, index: int) -> None:
        """A veth pair: ``inside`` in ``namespace`` (the machine's own if None) with the given address,
        ``port`` on the network's bridge."""
        ip("link", "add", inside, "type", "veth", "peer", "name", port)
        if namespace is not None:
            ip("link", "set", inside, "netns", namespace)
        ip("link", "set", port, "netns", self.services)
        subnet = self.subnets[network]
        ip("addr", "add", f"{self.address(network, index)}/{subnet.prefixlen}", "dev", inside, namespace=namespace)
        ip("link", "set", inside, "up", namespace=namespace)
        ip("link", "set", port, "master", BRIDGES[network], namespace=self.services)
        ip("link", "set", port, "up", namespace=self.services)

    def add_node(self, name: str) -> Node:
        index = FIRST_NODE_INDEX + len(self.nodes)
        namespace = f"{self.prefix}-{name}"
        ip("netns", "add", namespace)
        node = Node(self, name, namespace, index, {})
        self.nodes[name] = node  # removed with the rest, even if the links below fail
        ip("link", "set", "lo", "up", namespace=namespace)
        for network, letter in LINK_LETTERS.items():
            port = f"{self.prefix}{name}{letter.upper()}"
            self._link(namespace, f"{self.prefix}{name}{letter}", port, network, index)
            node.ports[network] = port
        return node


@contextmanager
def network(node_names: list[str]) -> Iterator[Network]:
    """The services namespace with its bridges, the machine's links to them, and a node per name; all
    removed when the block ends (deleting a namespace deletes the links inside it)."""
    prefix = f"wh{secrets.token_hex(2)}"  # interface names are at most 15 characters
    net = Network(prefix, dict(zip(BRIDGES, _free_subnets(len(BRIDGES)))), f"{prefix}-svc")
    try:
        ip("netns", "add", net.services)
        ip("link", "set", "lo", "up", namespace=net.services)
        for network_name, bridge in BRIDGES.items():
            ip("link", "add", bridge, "type", "bridge", namespace=net.services)
            subnet = net.subnets[network_name]
            ip("addr", "add", f"{net.services_address(network_name)}/{subnet.prefixlen}", "dev", bridge, namespace=net.services)
            ip("link", "set", bridge, "up", namespace=net.services)
            host_link = f"{prefix}h{LINK_LETTERS[network_name]}"
            net.host_links.append(host_link)
            net._link(None, host_link, f"{prefix}H{LINK_LETTERS[network_name]}", network_name, HOST_INDEX)
        for name in node_names:
            net.add_node(name)
        yield net
    finally:
        for link in net.host_links:
            ip("link", "del", link, check=False)
        for node in net.nodes.values():
            ip("netns", "del", node.namespace, check=False)
        ip("netns", "del", net.services, check=False)
