"""`flask send-call-digests`: the coordinators' morning digest of calls."""

import click

from webapp import jobs


@click.command("send-call-digests")
@click.option("--force", is_flag=True, help="Send even if today's digest went out.")
def send_call_digests_command(force: bool) -> None:
    """Mail every coordinator today's and overdue calls; run it each morning."""
    report = jobs.send_call_digests(force=force)
    if report.get("skipped"):
        click.echo("today's call digest was already sent; use --force to resend")
        return
    click.echo(
        f"call digest: {report['calls']} calls today, {report['overdue']} overdue; "
        f"sent to {report['sent']} of {report['recipients']} coordinators"
    )
