"""Demo history gives every page something to show."""

from datetime import datetime

from sqlalchemy import func, select

from webapp.calls import call_board
from webapp.clock import FixedClock
from webapp.demo import seed_demo_data
from webapp.demo_history import seed_demo_history
from webapp.extensions import db
from webapp.models import CallReason, Email, EmailReply, EmailStatus, PhoneCall

NOW = datetime(2026, 12, 4, 7, 30)  # Friday, 08:30 in Berlin


def test_history_fills_today_and_the_week(app):
    clock = FixedClock(NOW)
    seed_demo_data(db.session, clock, therapists=120, requests=900, seed=7)
    db.session.commit()

    counts = seed_demo_history(db.session, clock, seed=7)

    sent = db.session.scalar(
        select(func.count(Email.id)).where(Email.status == EmailStatus.SENT)
    )
    follow_ups = db.session.scalar(
        select(func.count(PhoneCall.id)).where(PhoneCall.reason == CallReason.FOLLOW_UP)
    )
    assert counts["sent_emails"] == sent == 40
    assert db.session.scalar(select(func.count(EmailReply.id))) == 8
    assert counts["calls_today"] == 6
    assert follow_ups > 0
    board = call_board(db.session, clock)
    assert len(board.overdue) == 2
    assert len(board.planned) >= 4


def test_demo_command_reports_the_history(app):
    result = app.test_cli_runner().invoke(
        args=["seed-demo", "--therapists", "60", "--requests", "400"]
    )

    assert result.exit_code == 0, result.output
    assert "Heute-Liste" in result.output
