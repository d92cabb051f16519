"""Egress policy: which addresses the gateway may open upstream connections to.

An endpoint's `url` is chosen by whoever holds `manage_inference`, and an answer can be read back
(`response.json_parser` of the `custom` service), so without a policy an admin key reads cloud
metadata (169.254.169.254) or the gateway's own routes. The check runs on the address a socket is
about to connect to, after DNS resolution (aiohttp's `socket_factory` hook), so a name that
resolves to a denied address is refused whatever it resolved to earlier (DNS rebinding).

Always denied: link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254,
an IPv6 cloud metadata address), unspecified addresses (0.0.0.0/8, ::), and the gateway's own
listening address. Optionally (`egress_deny_private`) loopback and private ranges, or
(`egress_allow`) everything outside a list of networks. With an outbound proxy the proxy connects
for us: only its own address is checked here.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_ALWAYS_DENIED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(net), why) for net, why in (
        ("169.254.0.0/16", "link-local and cloud metadata"),
        ("fe80::/10", "link-local"),
        ("fd00:ec2::254/128", "cloud metadata"),
        ("0.0.0.0/8", "unspecified"),
        ("::/128", "unspecified"),
    ))
_PRIVATE: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))


class EgressDenied(OSError):
    """Raised instead of connecting; an OSError so aiohttp reports it as a failed connection."""


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError as exc:
        raise ValueError(f"egress_allow: {exc}") from None


def _address(host: str) -> Address:
    ip = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    return ip


class EgressPolicy:
    def __init__(self, *, deny_private: bool = False, allow: Iterable[str] = ()) -> None:
        self.deny_private = deny_private
        self.allow = parse_networks(allow)
        self._own: set[tuple[Address | None, int]] = set()  # (address or None for any local one, port)
        self._local: frozenset[Address] = frozenset()
        self._seen: set[tuple[str, int]] = set()

    def add_listening(self, host: str, port: int) -> None:
        """The gateway listens here: connecting to it would be the gateway calling itself."""
        if (host, port) in self._seen:  # called for every request with its socket's address: keep it cheap
            return
        self._seen.add((host, port))
        try:
            ip = _address(host)
        except ValueError:
            return
        if ip.is_unspecified:
            self._local = _local_addresses()  # resolved once here, never on the connection path
        self._own.add((None if ip.is_unspecified else ip, port))

    def _is_own(self, ip: Address, port: int) -> bool:
        if (ip, port) in self._own:
            return True
        # bound to 0.0.0.0 or ::, every local address reaches the gateway; loopback is the one we can name
        return (None, port) in self._own and (ip.is_loopback or ip in self._local)

    def reason(self, host: str, port: int) -> str | None:
        """Why connecting to `host`:`port` is denied, or None when it is allowed."""
        ip = _address(host)
        for net, why in _ALWAYS_DENIED:
            if ip in net:
                return why
        if self._is_own(ip, port):
            return "the gateway's own listening address"
        if self.allow:
            return None if any(ip in net for net in self.allow) else "outside egress_allow"
        if self.deny_private and any(ip in net for net in _PRIVATE):
            return "private or loopback, denied by egress_deny_private"
        return None

    def socket_factory(self, addr_info) -> socket.socket:
        """aiohttp's `socket_factory`: called with each resolved address just before connecting to it."""
        family, type_, proto, _canonname, sockaddr = addr_info
        host, port = sockaddr[0], sockaddr[1]
        why = self.reason(host, port)
        if why is not None:
            # errno and strerror: aiohttp's ClientConnectorError shows only the strerror
            raise EgressDenied(errno.EACCES, f"connecting to [{host}] is denied by the gateway's egress policy ({why})")
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setblocking(False)
        return sock


def _local_addresses() -> frozenset[Address]:
    """This host's interface addresses, as far as its name resolves (cheap, no extra dependency)."""
    found: set[Address] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            try:
                found.add(_address(info[4][0]))
            except ValueError:
                continue
    except OSError:
        pass
    return frozenset(found)
