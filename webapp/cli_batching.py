"""`flask run-batching`: draft emails from open placement requests."""

import click

from webapp.batching import run_batching
from webapp.clock import app_clock
from webapp.extensions import db


@click.command("run-batching")
def run_batching_command() -> None:
    """Create one draft per therapist who may be emailed now."""
    report = run_batching(db.session, app_clock())
    click.echo(
        f"{report.drafts_created} drafts created with "
        f"{report.requests_drafted} placement requests; "
        f"{report.requests_waiting} wait for a later week"
    )
