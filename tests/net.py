"""Loopback helpers for tests that start their own Ray heads."""

import socket


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on loopback right now."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
