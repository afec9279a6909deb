"""Measure sending throughput, database to SMTP, with 1, 2 and 4 workers.

Creates a throwaway PostgreSQL database (or uses SQLite with --sqlite),
stores N approved emails of about 6 KB, starts an SMTP sink on 127.0.0.1
(Postfix's smtp-sink when installed, else aiosmtpd in a child process) and
prints emails per second and worker memory, next to a plain smtplib loop
over one connection as the reference.

    .venv/bin/python bench/send_throughput.py --emails 3000 --workers 1,2,4
"""

import argparse
import multiprocessing
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp import create_app  # noqa: E402
from webapp.extensions import db  # noqa: E402

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no SMTP sink on port {port}")


def start_sink(port: int) -> tuple[subprocess.Popen, str]:
    """Start Postfix's smtp-sink if present, else aiosmtpd in a process."""
    smtp_sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if Path(smtp_sink).exists():
        command = [smtp_sink, "-u", "nobody", f"127.0.0.1:{port}", "256"]
        name = "postfix smtp-sink"
    else:
        command = [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-c",
            "aiosmtpd.handlers.Sink",
            "-l",
            f"127.0.0.1:{port}",
        ]
        name = "aiosmtpd Sink"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    wait_for_port(port)
    return process, name


def make_database(use_sqlite: bool, folder: str) -> tuple[str, callable]:
    if use_sqlite:
        return f"sqlite:///{folder}/bench.db", lambda: None
    base = os.environ.get("BENCH_DATABASE_URL", PG_BASE)
    name = f"comms_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(base).set(database=name)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return url.render_as_string(hide_password=False), drop


def seed(app, count: int) -> None:
    """Store `count` approved emails, each to its own therapist."""
    from flask_migrate import upgrade

    from webapp.approval import approve_email
    from webapp.clock import system_clock
    from webapp.drafting import create_draft
    from webapp.models import Email, EmailKind, PlacementRequest, Therapist

    with app.app_context():
        upgrade()
        therapist = Therapist(
            external_id="bench-template",
            salutation="Frau",
            title="Dr.",
            first_name="Johanna",
            last_name="Weiß-Öztürk",
            email="praxis@weiss.example",
            federal_state="BE",
        )
        requests = [
            PlacementRequest(
                external_id=f"bench-pr-{i}",
                therapist=therapist,
                patient_pseudonym=f"P-{i:05d}",
                patient_age=30 + i,
                patient_gender="weiblich",
                diagnosis_code="F32.1",
                time_availability="Mo–Mi vormittags, ab 17 Uhr",
                patient_registered_at=datetime(2026, 10, 1 + i),
            )
            for i in range(5)
        ]
        db.session.add_all([therapist, *requests])
        db.session.flush()
        template = create_draft(
            db.session, therapist, EmailKind.BATCH_REQUEST, requests, system_clock
        )
        db.session.commit()
        approve_email(db.session, template.id, None, system_clock)
        size = len(template.mime_bytes)

        # Copy the approved email for N-1 more therapists: same body, own ids.
        therapists = [
            {
                "external_id": f"bench-{i}",
                "salutation": "Herr",
                "first_name": "Jürgen",
                "last_name": f"Groß {i}",
                "email": f"praxis{i}@gross.example",
                "federal_state": "BY",
                "phone_availability": [],
                "potentially_available": False,
                "knows_platform": False,
                "blocked": False,
                "cap_lock": 0,
                "created_at": template.created_at,
                "updated_at": template.created_at,
            }
            for i in range(count - 1)
        ]
        db.session.execute(sa.insert(Therapist), therapists)
        ids = db.session.scalars(
            sa.select(Therapist.id)
            .where(Therapist.external_id.like("bench-%"))
            .where(Therapist.external_id != "bench-template")
            .order_by(Therapist.id)
        ).all()
        columns = {
            c.name: getattr(template, c.key)
            for c in Email.__table__.columns
            if c.name not in {"id", "therapist_id", "message_id"}
        }
        rows = [
            {
                **columns,
                "therapist_id": tid,
                "recipient_email": f"praxis{i}@gross.example",
                "message_id": f"<bench-{i}-{uuid.uuid4().hex}@therapieplatz.example>",
            }
            for i, tid in enumerate(ids)
        ]
        db.session.execute(sa.insert(Email), rows)
        db.session.commit()
    print(f"seeded {count} approved emails of {size / 1024:.1f} KB each")


def requeue_all(app) -> None:
    from webapp.models import DeliveryAttempt, Email, EmailStatus

    with app.app_context():
        db.session.execute(sa.delete(DeliveryAttempt))
        db.session.execute(
            sa.update(Email).values(
                status=EmailStatus.QUEUED,
                next_attempt_at=datetime.now(UTC).replace(tzinfo=None),
                sent_at=None,
                claimed_by=None,
            )
        )
        db.session.commit()


def worker(config: dict, barrier, results, name: str) -> None:
    """One worker process: wait for the start signal, then drain the queue."""
    from webapp.clock import system_clock
    from webapp.sending import SendPolicy, SmtpSettings, send_due_emails

    app = create_app(config)
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        settings = SmtpSettings.from_config(app.config)
        policy = SendPolicy(chunk_size=app.config["SEND_CHUNK_SIZE"])
        barrier.wait()
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            profile = cProfile.Profile()
            report = profile.runcall(
                send_due_emails, db.session, system_clock, settings, name, policy
            )
            profile.dump_stats(f"{os.environ['BENCH_PROFILE']}.{name}")
        else:
            report = send_due_emails(db.session, system_clock, settings, name, policy)
    results.put((name, report.sent, resident_mb()))


def resident_mb() -> float:
    """Current resident memory; ru_maxrss would count the pre-exec parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_workers(config: dict, count: int) -> tuple[float, list]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count + 1)
    results = context.Queue()
    processes = [
        context.Process(target=worker, args=(config, barrier, results, f"w{i}"))
        for i in range(count)
    ]
    for process in processes:
        process.start()
    barrier.wait()
    started = time.perf_counter()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    return elapsed, [results.get() for _ in processes]


def reference_loop(app, port: int, count: int) -> float:
    """Push the stored bytes over one connection with plain smtplib."""
    from webapp.models import Email

    with app.app_context():
        rows = db.session.execute(
            sa.select(Email.sender_email, Email.recipient_email, Email.mime_bytes)
        ).all()
    smtp = smtplib.SMTP("127.0.0.1", port)
    started = time.perf_counter()
    for sender, recipient, raw in rows[:count]:
        smtp.sendmail(sender, [recipient], raw)
    elapsed = time.perf_counter() - started
    smtp.quit()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=3000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()

    port = free_port()
    sink, sink_name = start_sink(port)
    folder = tempfile.mkdtemp()
    url, drop = make_database(args.sqlite, folder)
    config = {
        "SQLALCHEMY_DATABASE_URI": url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port,
        "SEND_CHUNK_SIZE": args.chunk,
    }
    try:
        app = create_app(config)
        seed(app, args.emails)
        print(f"database: {url.split('://')[0]}, sink: {sink_name}, chunk {args.chunk}")

        elapsed = reference_loop(app, port, args.emails)
        print(
            f"plain smtplib loop, one connection: {args.emails / elapsed:7.0f} emails/s"
        )

        for count in (int(n) for n in args.workers.split(",")):
            requeue_all(app)
            elapsed, results = run_workers(config, count)
            sent = sum(r[1] for r in results)
            memory = ", ".join(f"{r[2]:.0f}" for r in results)
            print(
                f"{count} worker(s): {sent} sent in {elapsed:5.2f} s = "
                f"{sent / elapsed:7.0f} emails/s; worker RSS MB: {memory}"
            )
    finally:
        with app.app_context():
            db.engine.dispose()
        drop()
        sink.terminate()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
