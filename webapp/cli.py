"""`flask` commands: users, import, batching, demo data."""

import click
from flask import Flask

from webapp.cli_batching import run_batching_command
from webapp.cli_calls import plan_calls_command
from webapp.cli_demo import seed_demo
from webapp.cli_intake import create_api_token_command, import_data
from webapp.cli_reminders import send_call_digests_command
from webapp.extensions import db
from webapp.models import Role, User


def register_cli(app: Flask) -> None:
    """Attach the service's commands to the app's CLI."""
    app.cli.add_command(create_user)
    app.cli.add_command(import_data)
    app.cli.add_command(create_api_token_command)
    app.cli.add_command(seed_demo)
    app.cli.add_command(plan_calls_command)
    app.cli.add_command(run_batching_command)
    app.cli.add_command(send_call_digests_command)


@click.command("create-user")
@click.argument("email")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([role.value for role in Role]),
    default=Role.COORDINATOR.value,
)
@click.password_option()
def create_user(email: str, name: str, role: str, password: str) -> None:
    """Create a staff user."""
    user = User(email=email.strip().lower(), name=name, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    click.echo(f"created user {user.id} ({role})")
