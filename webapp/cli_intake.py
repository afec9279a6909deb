"""`flask` commands for intake: import data files, create API tokens."""

import json
import logging
from pathlib import Path

import click

from webapp.api_tokens import create_api_token
from webapp.exceptions import IntakeConflict, ValidationFailed
from webapp.extensions import db
from webapp.intake import import_records

log = logging.getLogger(__name__)


@click.command("import-data")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_data(path: Path) -> None:
    """Import therapists and placement requests from a JSON file, all or nothing.

    The file holds {"therapists": [...], "placement_requests": [...]} in the
    shapes of the API; each therapist also carries its external_id.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise click.ClickException(f"{path} ist nicht UTF-8-kodiert") from None
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{path} ist kein gültiges JSON (Zeile {exc.lineno}, Spalte {exc.colno})"
        ) from None

    try:
        report = import_records(db.session, data)
        db.session.commit()
    except (ValidationFailed, IntakeConflict) as exc:
        db.session.rollback()
        where = exc.field or "Datei"
        raise click.ClickException(
            f"{where}: {exc.message}. Nichts wurde importiert."
        ) from None
    except Exception:
        db.session.rollback()
        raise

    log.info(
        "import stored %s new and %s updated therapists, %s new requests",
        report.therapists_created,
        report.therapists_updated,
        report.requests_created,
    )
    click.echo(
        f"Therapeut:innen: {report.therapists_created} neu,"
        f" {report.therapists_updated} aktualisiert"
    )
    click.echo(
        f"Platzanfragen: {report.requests_created} neu,"
        f" {report.requests_unchanged} schon vorhanden"
    )


@click.command("create-api-token")
@click.argument("name")
def create_api_token_command(name: str) -> None:
    """Create a bearer token for another service and print it once."""
    try:
        token, secret = create_api_token(db.session, name)
    except ValidationFailed as exc:
        raise click.ClickException(f"NAME {exc.message}") from None
    db.session.commit()

    click.echo(f"Token {token.id} für {token.name} angelegt.", err=True)
    click.echo("Er wird nur jetzt angezeigt; bitte sicher aufbewahren:", err=True)
    click.echo(secret)
