"""What a web process is told besides its backends: proxies it trusts, origins it
serves, and the limits that keep one user or one storm from taking it over."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class WebOptions:
    #: Addresses or networks of TLS proxies in front: only their ``X-Forwarded-For``
    #: and ``X-Forwarded-Proto`` are believed.
    trusted_proxies: tuple[str, ...] = ()
    #: Origins (``https://hotline.example``) accepted besides the request's own.
    origins: tuple[str, ...] = ()
    #: Open live-feed websockets per person and per process.
    ws_per_user: int = 5
    ws_per_process: int = 500
    #: Messages waiting for one slow browser before its socket is closed (it reconnects).
    ws_queue: int = 256
    #: How often open websockets' sessions and people are checked again (besides
    #: the checks that sign-out and a stale session trigger at once).
    recheck_seconds: float = 2.0
    #: Failed sign-ins allowed per login and per client address in one window.
    login_failures_per_login: int = 10
    login_failures_per_address: int = 50
    login_window_seconds: int = 900
    #: scrypt threads (0: half the cores, at least one), and sign-ins that may wait
    #: for one before "busy" is answered.
    hash_workers: int = 0
    hash_waiting: int = 16
    #: The web's own Redis connections (apart from the other roles'), and how long a
    #: request waits for one before it is answered 503.
    redis_connections: int = 50
    redis_wait_seconds: float = 2.0
    proxy_networks: tuple[Network, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("ws_per_user", "ws_per_process", "ws_queue", "login_failures_per_login",
                     "login_failures_per_address", "login_window_seconds", "redis_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        if self.hash_workers < 0 or self.hash_waiting < 0 or not self.recheck_seconds > 0 \
                or not self.redis_wait_seconds > 0:
            raise ValueError("hash_waiting must not be negative, the seconds positive")
        networks = tuple(ipaddress.ip_network(p.strip(), strict=False)
                         for p in self.trusted_proxies)
        object.__setattr__(self, "proxy_networks", networks)
        object.__setattr__(self, "origins", tuple(o.rstrip("/").lower() for o in self.origins))
