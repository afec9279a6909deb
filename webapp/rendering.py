"""Render emails to therapists: subject, inlined HTML and plain text."""

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import css_inline
from flask import current_app, render_template
from inscriptis import get_text
from inscriptis.model.config import ParserConfig

from webapp.models import EmailKind, PlacementRequest, Therapist

log = logging.getLogger(__name__)

# At-rules (the phone layout's @media block) stay in a <style> tag because they
# cannot be inlined; nothing is ever fetched from the network.
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
_TEXT_CONFIG = ParserConfig(display_links=False)

_SALUTATION_TITLES = ("Prof.", "Dr.")
_SALUTATION_OPENERS = {
    "frau": "Sehr geehrte Frau",
    "herr": "Sehr geehrter Herr",
}

_SUBJECT_PREFIXES = {
    EmailKind.INITIAL_CONTACT: "Anfrage",
    EmailKind.BATCH_REQUEST: "Anfrage",
    EmailKind.FOLLOW_UP: "Erinnerung",
    EmailKind.CONFIRMATION: "Bestätigung",
}

# Accusative, as used after "für".
_ONE_PATIENT = {
    "weiblich": "eine Patientin",
    "männlich": "einen Patienten",
}
_ONE_PATIENT_NEUTRAL = "eine:n Patient:in"


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered email, ready to be stored and serialised."""

    subject: str
    html: str
    text: str


def _clean(value: str | None) -> str:
    return " ".join((value or "").split())


def salutation(therapist: Therapist) -> str:
    """Return the German letter salutation for the therapist, with comma.

    Only Prof. and Dr. belong in a German salutation; diplomas such as
    Dipl.-Psych. and the faculty of a doctorate (Dr. med.) stay out.
    """
    title = _salutation_title(_clean(therapist.title))
    last_name = _clean(therapist.last_name)
    opener = _SALUTATION_OPENERS.get(_clean(therapist.salutation).lower())
    if opener and last_name:
        return " ".join(part for part in (opener, title, last_name) if part) + ","

    # No known form of address: greet by full name rather than guess one.
    name = " ".join(
        part for part in (title, _clean(therapist.first_name), last_name) if part
    )
    return f"Guten Tag {name}," if name else "Guten Tag,"


def _salutation_title(title: str) -> str:
    kept = [word for word in title.split() if word in _SALUTATION_TITLES]
    return " ".join(dict.fromkeys(kept))


def patients_phrase(requests: Sequence[PlacementRequest]) -> str:
    """Describe the patients after "für": "eine Patientin", "4 Patient:innen"."""
    if len(requests) == 1:
        gender = _clean(requests[0].patient_gender).lower()
        return _ONE_PATIENT.get(gender, _ONE_PATIENT_NEUTRAL)
    return f"{len(requests)} Patient:innen"


def email_subject(kind: EmailKind | str, requests: Sequence[PlacementRequest]) -> str:
    """Return the subject line for an email of this kind."""
    kind = EmailKind(kind)
    places = "Therapieplatz" if len(requests) == 1 else "Therapieplätze"
    return f"{_SUBJECT_PREFIXES[kind]}: {places} für {patients_phrase(requests)}"


def render_email(
    kind: EmailKind | str,
    therapist: Therapist,
    requests: list[PlacementRequest],
) -> RenderedEmail:
    """Render one email of the given kind to the therapist about the requests.

    Needs a Flask app context. The requests are shown in the given order.
    """
    kind = EmailKind(kind)
    if not requests:
        raise ValueError("an email needs at least one placement request")

    subject = email_subject(kind, requests)
    html = render_template(
        f"emails/{kind.value}.html",
        subject=subject,
        salutation=salutation(therapist),
        therapist=therapist,
        requests=requests,
        count=len(requests),
        patients_phrase=patients_phrase(requests),
        sender_name=current_app.config["MAIL_SENDER_NAME"],
        sender_email=current_app.config["MAIL_SENDER_EMAIL"],
    )
    html = _INLINER.inline(html)
    log.debug(
        "Rendered %s email for therapist %s with %d requests",
        kind.value,
        therapist.id,
        len(requests),
    )
    return RenderedEmail(subject=subject, html=html, text=html_to_text(html))


def html_to_text(html: str) -> str:
    """Turn rendered email HTML into a tidy plain-text alternative."""
    text = get_text(html, _TEXT_CONFIG)
    # Layout tables leave padded lines and runs of blank lines behind.
    lines = [line.strip() for line in text.splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip() + "\n"
