"""The one-command demo: web, worker, Valkey and SMTP sink start and stop together."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


def start_demo(instance: Path, port: int) -> subprocess.Popen:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SMTP_HOST", "SMTP_PORT"}
    }
    env.update(INSTANCE_DIR=str(instance), PORT=str(port))
    return subprocess.Popen(
        [sys.executable, "-m", "webapp.devstack"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def leftover_processes(instance: Path) -> str:
    found = subprocess.run(
        ["pgrep", "-af", str(instance)], capture_output=True, text=True
    )
    return found.stdout


@pytest.mark.parametrize(
    ("how", "stop"),
    [
        # Ctrl-C in a terminal reaches the whole foreground process group.
        ("ctrl-c", lambda pid: os.killpg(pid, signal.SIGINT)),
        ("kill", lambda pid: os.kill(pid, signal.SIGTERM)),
    ],
)
def test_demo_serves_the_dashboard_and_stops_everything(tmp_path, how, stop):
    port = free_port()
    demo = start_demo(tmp_path, port)
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/health") == 200
        assert wait_for_http(f"http://127.0.0.1:{port}/login") == 200
        assert (tmp_path / "comms.db").exists()
        assert (tmp_path / "mailbox").is_dir()
    finally:
        stop(demo.pid)
        _, log = demo.communicate(timeout=60)

    assert demo.returncode == 0, log[-2000:]
    assert "koordination@demo.local" in log
    assert "Traceback" not in log, log[-3000:]
    assert not listening(port)
    assert leftover_processes(tmp_path) == ""


def test_demo_on_a_busy_port_says_how_to_pick_another(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        demo = start_demo(tmp_path, port)
        _, log = demo.communicate(timeout=60)

    assert demo.returncode == 1
    assert f"Port {port} is in use" in log
    assert "PORT=" in log


def test_demo_started_with_sigint_ignored_still_stops_on_sigint(tmp_path):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SMTP_HOST", "SMTP_PORT"}
    }
    env.update(INSTANCE_DIR=str(tmp_path), PORT=str(port))
    # What a shell does to a command started with `&`.
    demo = subprocess.Popen(
        [sys.executable, "-m", "webapp.devstack"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/health") == 200
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        _, log = demo.communicate(timeout=60)

    assert demo.returncode == 0, log[-2000:]
    assert not listening(port)
    assert leftover_processes(tmp_path) == ""
