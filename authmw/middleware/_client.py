"""The client address of a request: the peer, or what trusted proxies say it is.

By default the address is the connection's peer (ASGI ``scope["client"]``, WSGI
``REMOTE_ADDR``) and ``X-Forwarded-For`` is ignored: any client can write that header, and
trusting it would let an attacker pick the address the lockout counts against. Behind a reverse
proxy every request comes from the proxy, so the middlewares take ``trusted_proxies``: addresses
or networks (``"10.0.0.0/8"``) of the proxies in front of the app. When the peer is one of
them, ``X-Forwarded-For`` is read from the right (each proxy appends the address it saw) and
the first hop that is not a trusted proxy is the client. A hop that is not an IP address stops
the walk at the last trusted proxy, which is then taken as the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ..errors import ConfigurationError

__all__ = ["TrustedProxies", "parse_networks"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[_Network, ...]:
    """``values`` (addresses or networks) as networks; ``ConfigurationError`` for anything
    else, or for a single string (it would be read character by character)."""
    if isinstance(values, (str, bytes)):
        raise ConfigurationError(
            f"trusted_proxies: expected a list of addresses or networks, not one string: "
            f"[{values!r}]"
        )
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"trusted_proxies: {value!r} is not an IP address or network"
            ) from None
    return tuple(networks)


def _address(text: str) -> _Address | None:
    try:
        parsed = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


class TrustedProxies:
    """Resolves a request's client address (see the module docstring)."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = parse_networks(networks)

    def _trusted(self, address: _Address | None) -> bool:
        return address is not None and any(address in network for network in self._networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client address of a request from ``peer`` carrying ``forwarded_for`` (every
        ``X-Forwarded-For`` value joined with commas, or None)."""
        if not self._networks or not forwarded_for or not self._trusted(_address(peer or "")):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            address = _address(hop)
            if address is None:
                break
            client = str(address)
            if not self._trusted(address):
                break
        return client
