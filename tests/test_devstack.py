"""The one-command demo: web, worker, Valkey and SMTP sink start and stop together."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_for_http(url: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_serves_the_dashboard_and_stops_everything_on_ctrl_c(tmp_path):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SMTP_HOST", "SMTP_PORT"}
    }
    env.update(INSTANCE_DIR=str(tmp_path), PORT=str(port))
    demo = subprocess.Popen(
        [sys.executable, "-m", "webapp.devstack"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/health") == 200
        assert wait_for_http(f"http://127.0.0.1:{port}/login") == 200
        assert (tmp_path / "comms.db").exists()
        assert (tmp_path / "mailbox").is_dir()
    finally:
        # Ctrl-C reaches the whole process group, as in a terminal.
        os.killpg(demo.pid, signal.SIGINT)
        _, log = demo.communicate(timeout=60)

    assert demo.returncode == 0, log[-2000:]
    assert "koordination@demo.local" in log
    assert not listening(port)
    leftovers = subprocess.run(
        ["pgrep", "-f", f"--dir {tmp_path}"], capture_output=True, text=True
    )
    assert leftovers.stdout == "", "embedded Valkey still running"
