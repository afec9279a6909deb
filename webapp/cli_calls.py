"""`flask plan-calls`: plan follow-up calls and calls without email."""

import click

from webapp.call_planning import plan_calls
from webapp.clock import app_clock
from webapp.extensions import db


@click.command("plan-calls")
def plan_calls_command() -> None:
    """Plan the calls that are due now; running it twice plans nothing twice."""
    report = plan_calls(db.session, app_clock())
    click.echo(
        f"{report.follow_up} follow-up calls and {report.no_email} calls to "
        f"therapists without email planned; {report.without_slot} without a free "
        f"slot, {report.invalid} with invalid data"
    )
