"""German demo data: the seeding service and the `seed-demo` command."""

import logging
import re
import time
from collections import Counter
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select

from webapp.clock import FixedClock
from webapp.demo import FEDERAL_STATES, seed_demo_data, transliterate
from webapp.extensions import db
from webapp.models import PlacementRequest, Role, Therapist, User

NOW = datetime(2026, 12, 4, 8, 30)
TODAY = date(2026, 12, 4)


@pytest.fixture
def clock() -> FixedClock:
    """A clock standing at 04.12.2026 09:30 in Berlin."""
    return FixedClock(NOW)


@pytest.fixture
def seeded(app, clock) -> dict[str, int]:
    """The default demo data set (300 therapists, 3000 requests), committed."""
    counts = seed_demo_data(db.session, clock)
    db.session.commit()
    return counts


def _therapists() -> list[Therapist]:
    return list(db.session.scalars(select(Therapist).order_by(Therapist.external_id)))


def _requests_per_therapist() -> Counter:
    rows = db.session.execute(
        select(PlacementRequest.therapist_id, func.count()).group_by(
            PlacementRequest.therapist_id
        )
    )
    return Counter(dict(rows.all()))


def _snapshot() -> tuple[list[tuple], list[tuple]]:
    therapists = [
        (
            t.external_id,
            t.salutation,
            t.title,
            t.first_name,
            t.last_name,
            t.email,
            t.phone,
            t.federal_state,
            t.phone_availability,
            t.potentially_available,
            t.knows_platform,
            t.next_contact_after,
            t.blocked,
            t.blocked_reason,
            t.created_at,
        )
        for t in _therapists()
    ]
    requests = db.session.execute(
        select(
            PlacementRequest.external_id,
            Therapist.external_id,
            PlacementRequest.patient_pseudonym,
            PlacementRequest.patient_age,
            PlacementRequest.patient_gender,
            PlacementRequest.diagnosis_code,
            PlacementRequest.time_availability,
            PlacementRequest.patient_registered_at,
            PlacementRequest.created_at,
        )
        .join(Therapist)
        .order_by(PlacementRequest.external_id)
    ).all()
    return therapists, [tuple(row) for row in requests]


def _delete_demo_rows() -> None:
    db.session.execute(delete(PlacementRequest))
    db.session.execute(delete(Therapist))
    db.session.commit()


def test_seed_stores_the_requested_counts(seeded):
    stored_therapists = db.session.scalar(select(func.count(Therapist.id)))
    stored_requests = db.session.scalar(select(func.count(PlacementRequest.id)))
    statuses = set(db.session.scalars(select(PlacementRequest.status).distinct()))

    assert seeded["therapists"] == stored_therapists == 300
    assert seeded["placement_requests"] == stored_requests == 3000
    assert statuses == {"offen"}
    assert seeded["therapists_without_email"] == db.session.scalar(
        select(func.count(Therapist.id)).where(Therapist.email.is_(None))
    )


def test_seed_with_small_sizes_stores_exactly_those(app, clock):
    counts = seed_demo_data(db.session, clock, therapists=5, requests=17, seed=3)
    db.session.commit()

    assert counts["therapists"] == 5
    assert counts["placement_requests"] == 17
    assert db.session.scalar(select(func.count(PlacementRequest.id))) == 17


def test_same_seed_gives_same_data(app, clock):
    seed_demo_data(db.session, clock, therapists=60, requests=400, seed=7)
    db.session.commit()
    first = _snapshot()
    _delete_demo_rows()

    seed_demo_data(db.session, clock, therapists=60, requests=400, seed=7)
    db.session.commit()

    assert _snapshot() == first


def test_other_seed_gives_other_data(app, clock):
    seed_demo_data(db.session, clock, therapists=60, requests=400, seed=7)
    db.session.commit()
    first = _snapshot()
    _delete_demo_rows()

    seed_demo_data(db.session, clock, therapists=60, requests=400, seed=8)
    db.session.commit()

    assert _snapshot()[0] != first[0]


def test_names_have_umlauts_eszett_and_double_names(seeded):
    therapists = _therapists()
    names = [f"{t.first_name} {t.last_name}" for t in therapists]

    assert any(re.search("[äöüÄÖÜ]", name) for name in names)
    assert any("ß" in name for name in names)
    assert any("-" in t.last_name for t in therapists)
    assert any("-" in t.first_name for t in therapists)
    assert {t.salutation for t in therapists} == {"Frau", "Herr", None}
    assert {t.title for t in therapists} <= {None, "Dr.", "Dipl.-Psych.", "Prof. Dr."}


def test_some_therapists_without_email_still_get_requests(seeded):
    per_therapist = _requests_per_therapist()
    without_email = [t for t in _therapists() if t.email is None]

    assert 0.05 < len(without_email) / 300 < 0.2
    assert any(per_therapist[t.id] for t in without_email)
    # Without email the phone is the only channel, so it is always there.
    assert all(t.phone for t in without_email)


def test_every_email_uses_the_reserved_example_tld(seeded):
    emails = [t.email for t in _therapists() if t.email]

    assert all(email.endswith(".example") for email in emails)
    assert all(re.fullmatch(r"[a-z0-9.-]+@[a-z0-9.-]+\.example", e) for e in emails)
    assert len(set(emails)) == len(emails)


@pytest.mark.parametrize(
    ("name", "ascii_form"),
    [
        ("Müller", "mueller"),
        ("Weiß", "weiss"),
        ("Öztürk", "oeztuerk"),
        ("Müller-Lüdenscheidt", "mueller-luedenscheidt"),
        ("von der Heide", "von-der-heide"),
        ("Yılmaz", "yilmaz"),
        ("Şahin", "sahin"),
        ("Małgorzata", "malgorzata"),
        ("Dąbrowska", "dabrowska"),
        ("Anna-Lena", "anna-lena"),
    ],
)
def test_transliterate_makes_address_safe_ascii(name, ascii_form):
    assert transliterate(name) == ascii_form


def test_phone_availability_windows_are_valid(seeded):
    for therapist in _therapists():
        windows = therapist.phone_availability
        assert 1 <= len(windows) <= 3
        for window in windows:
            assert 0 <= window["weekday"] <= 6
            start = datetime.strptime(window["start"], "%H:%M")
            end = datetime.strptime(window["end"], "%H:%M")
            assert start < end
            assert start.minute % 5 == 0 and end.minute % 5 == 0
            assert 20 <= (end - start).seconds // 60 <= 60


def test_phone_windows_fall_mostly_on_working_days(seeded):
    weekdays = Counter(
        window["weekday"]
        for therapist in _therapists()
        for window in therapist.phone_availability
    )

    assert sum(weekdays[day] for day in range(5)) / weekdays.total() > 0.9


def test_phone_numbers_look_german(seeded):
    phones = [t.phone for t in _therapists() if t.phone]

    assert all(re.fullmatch(r"(\+49 [1-9]|\(0|0)[0-9 /()-]+", p) for p in phones)
    assert any(p.startswith("+49 ") for p in phones)
    assert any(p.startswith("0") for p in phones)


def test_federal_states_follow_population(seeded):
    states = Counter(t.federal_state for t in _therapists())

    assert set(states) <= set(FEDERAL_STATES)
    assert states.most_common(1)[0][0] == "NW"
    assert states["NW"] > states["HB"]


def test_flags_and_cooling_periods_are_realistic(seeded):
    therapists = _therapists()
    cooling = [
        t for t in therapists if t.next_contact_after and t.next_contact_after > TODAY
    ]
    blocked = [t for t in therapists if t.blocked]

    assert 0.2 < sum(t.potentially_available for t in therapists) / 300 < 0.4
    assert 0.3 < sum(t.knows_platform for t in therapists) / 300 < 0.5
    assert cooling
    assert all(t.next_contact_after <= TODAY + timedelta(days=28) for t in cooling)
    assert blocked and len(blocked) < 20
    assert all(t.blocked_reason for t in blocked)
    assert all(t.blocked_reason is None for t in therapists if not t.blocked)


def test_requests_are_uneven_and_exceed_the_batch_cap_for_some(seeded):
    per_therapist = _requests_per_therapist()
    counts = [per_therapist[t.id] for t in _therapists()]

    assert counts.count(0) > 0
    assert sum(1 for count in counts if count <= 8) > len(counts) / 2
    assert sum(1 for count in counts if count > 6) >= 10
    assert seeded["max_requests_per_therapist"] == max(counts)


def test_patient_fields_are_plausible(seeded):
    requests = list(db.session.scalars(select(PlacementRequest)))

    assert all(re.fullmatch(r"P-[A-Z0-9]{5}", r.patient_pseudonym) for r in requests)
    assert all(18 <= r.patient_age <= 75 for r in requests)
    assert {r.patient_gender for r in requests} == {"weiblich", "männlich", "divers"}
    assert all(re.fullmatch(r"F\d\d\.\d{1,2}", r.diagnosis_code) for r in requests)
    assert all(r.time_availability for r in requests)
    for request in requests:
        waited = NOW - request.patient_registered_at
        assert timedelta(days=1) <= waited <= timedelta(days=120)
        assert request.patient_registered_at <= request.created_at <= NOW


def test_a_patient_proposed_twice_has_the_same_details(seeded):
    requests = list(db.session.scalars(select(PlacementRequest)))
    by_patient: dict[str, set] = {}
    for r in requests:
        details = (r.patient_age, r.patient_gender, r.diagnosis_code)
        by_patient.setdefault(r.patient_pseudonym, set()).add(details)

    assert seeded["patients"] == len(by_patient) < len(requests)
    assert all(len(details) == 1 for details in by_patient.values())


def test_seed_logs_counts_but_no_personal_data(app, clock, caplog, monkeypatch):
    # Alembic's fileConfig in migrations/env.py disables loggers that exist
    # before the test database is upgraded; this one must be heard here.
    monkeypatch.setattr(logging.getLogger("webapp.demo"), "disabled", False)
    caplog.set_level(logging.DEBUG, logger="webapp.demo")

    seed_demo_data(db.session, clock, therapists=40, requests=200)
    db.session.commit()

    text = caplog.text
    assert "40 therapists" in text and "200 placement requests" in text
    assert "@" not in text
    assert not any(t.last_name in text for t in _therapists())


def test_default_sizes_seed_quickly(app, clock):
    started = time.perf_counter()

    seed_demo_data(db.session, clock)
    db.session.commit()

    assert time.perf_counter() - started < 10


def test_seed_demo_command_creates_data_and_staff_users(app):
    runner = app.test_cli_runner()

    result = runner.invoke(
        args=["seed-demo", "--therapists", "30", "--requests", "150", "--seed", "1"]
    )

    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(func.count(Therapist.id))) == 30
    assert db.session.scalar(select(func.count(PlacementRequest.id))) == 150
    users = {u.email: u for u in db.session.scalars(select(User))}
    assert users["koordination@demo.local"].role == Role.COORDINATOR
    assert users["koordination@demo.local"].name == "Kim Koordination"
    assert users["supervision@demo.local"].role == Role.SUPERVISOR
    assert users["admin@demo.local"].role == Role.ADMIN
    assert all(user.check_password("demo1234") for user in users.values())
    for email in users:
        assert f"{email} / demo1234" in result.output


def test_seed_demo_command_refuses_second_run_without_force(app):
    runner = app.test_cli_runner()
    args = ["seed-demo", "--therapists", "20", "--requests", "60"]
    runner.invoke(args=args)

    refused = runner.invoke(args=args)

    assert refused.exit_code != 0
    assert "--force" in refused.output
    assert db.session.scalar(select(func.count(Therapist.id))) == 20

    forced = runner.invoke(args=[*args, "--force"])

    assert forced.exit_code == 0, forced.output
    external_ids = list(db.session.scalars(select(Therapist.external_id)))
    assert len(external_ids) == len(set(external_ids)) == 40
    emails = [e for e in db.session.scalars(select(Therapist.email)) if e]
    assert len(emails) == len(set(emails))
    assert db.session.scalar(select(func.count(User.id))) == 3


def test_seed_demo_command_keeps_an_existing_demo_user(app):
    user = User(email="koordination@demo.local", name="Kim K.", role=Role.COORDINATOR)
    user.set_password("anderes-passwort")
    db.session.add(user)
    db.session.commit()

    result = app.test_cli_runner().invoke(
        args=["seed-demo", "--therapists", "5", "--requests", "10"]
    )

    assert result.exit_code == 0, result.output
    db.session.refresh(user)
    assert user.check_password("anderes-passwort")
    assert "vorhanden" in result.output


def test_seed_demo_if_empty_skips_a_filled_database_without_error(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo", "--if-empty", "--therapists", "8"])

    again = runner.invoke(args=["seed-demo", "--if-empty", "--therapists", "8"])

    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    assert "keine Demodaten angelegt" in again.output
    assert db.session.scalar(select(func.count(Therapist.id))) == 8
