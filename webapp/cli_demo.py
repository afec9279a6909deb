"""`flask seed-demo`: fill an empty database with German demo data."""

import logging
import time

import click
from sqlalchemy import func, select

from webapp.clock import system_clock
from webapp.demo import seed_demo_data
from webapp.demo_history import seed_demo_history
from webapp.extensions import db
from webapp.models import Role, Therapist, User

log = logging.getLogger(__name__)

DEMO_PASSWORD = "demo1234"

# (email, name, role) of the staff accounts a demo needs to log in.
DEMO_USERS = (
    ("koordination@demo.local", "Kim Koordination", Role.COORDINATOR),
    ("supervision@demo.local", "Sascha Supervision", Role.SUPERVISOR),
    ("admin@demo.local", "Alex Admin", Role.ADMIN),
)


@click.command("seed-demo")
@click.option(
    "--therapists", default=300, show_default=True, type=click.IntRange(min=0)
)
@click.option("--requests", default=3000, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=42, show_default=True, type=int)
@click.option(
    "--force",
    is_flag=True,
    help="Auch dann anlegen, wenn schon Therapeut:innen gespeichert sind.",
)
@click.option(
    "--if-empty",
    is_flag=True,
    help="Ohne Fehler nichts tun, wenn schon Therapeut:innen gespeichert sind.",
)
def seed_demo(
    therapists: int, requests: int, seed: int, force: bool, if_empty: bool
) -> None:
    """Create demo therapists, open placement requests and staff logins."""
    if force and if_empty:
        raise click.UsageError("--force und --if-empty schließen sich aus.")
    existing = db.session.scalar(select(func.count()).select_from(Therapist))
    if existing and if_empty:
        # The one-command demo calls this on every start; later starts keep data.
        click.echo(f"{existing} Therapeut:innen vorhanden, keine Demodaten angelegt.")
        return
    if existing and not force:
        raise click.ClickException(
            f"Es sind schon {existing} Therapeut:innen gespeichert. "
            "Mit --force werden weitere Demodaten hinzugefügt."
        )
    if requests and not therapists:
        raise click.BadParameter(
            "Platzanfragen brauchen mindestens eine Therapeut:in.",
            param_hint="--requests",
        )

    started = time.perf_counter()
    counts = seed_demo_data(
        db.session, system_clock, therapists=therapists, requests=requests, seed=seed
    )
    created_users = _ensure_demo_users()
    db.session.commit()
    history = seed_demo_history(db.session, system_clock, seed=seed)
    seconds = f"{time.perf_counter() - started:.1f}".replace(".", ",")

    click.echo(
        f"{counts['therapists']} Therapeut:innen "
        f"({counts['therapists_without_email']} ohne E-Mail, "
        f"{counts['therapists_blocked']} gesperrt, "
        f"{counts['therapists_in_cooling_period']} in Kontaktpause) und "
        f"{counts['placement_requests']} offene Platzanfragen "
        f"({counts['patients']} Patient:innen) angelegt "
        f"in {seconds} s."
    )
    click.echo(
        f"Verlauf: {history['sent_emails']} gesendete Anfragen, "
        f"{history['replies']} Antworten, {history['calls_today']} Anrufe auf der "
        f"Heute-Liste, {history['calls_planned']} weitere Anrufe geplant."
    )
    click.echo("Demo-Zugänge:")
    for email, name, role in DEMO_USERS:
        state = "neu" if email in created_users else "vorhanden"
        click.echo(f"  {email} / {DEMO_PASSWORD}  {role.value}, {name} ({state})")


def _ensure_demo_users() -> set[str]:
    """Add the demo staff accounts that do not exist yet; return new emails."""
    known = set(
        db.session.scalars(
            select(User.email).where(User.email.in_([e for e, _, _ in DEMO_USERS]))
        )
    )
    created = set()
    for email, name, role in DEMO_USERS:
        if email in known:
            continue
        user = User(email=email, name=name, role=role.value)
        user.set_password(DEMO_PASSWORD)
        db.session.add(user)
        created.add(email)
    db.session.flush()
    log.info("demo staff accounts created: %s", len(created))
    return created
