"""A free TCP port for the multi-process tests, so that runs side by side never collide on a fixed port."""

import socket


def free_port() -> int:
    """A port that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
