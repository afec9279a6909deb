"""Realistic German demo data: therapists and open placement requests.

Everything comes from one `random.Random(seed)`, so a seed and a clock give
the same rows every time. Email addresses use the reserved `.example` TLD,
so no real mailbox can ever be reached from demo data.
"""

import itertools
import logging
import random
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from webapp.clock import Clock
from webapp.models import PlacementRequest, PlacementStatus, Therapist

log = logging.getLogger(__name__)

BERLIN = ZoneInfo("Europe/Berlin")
THERAPIST_ID_PREFIX = "demo-th-"
REQUEST_ID_PREFIX = "demo-pr-"

# Population in millions (2023), so the states appear in realistic shares.
FEDERAL_STATES: dict[str, float] = {
    "NW": 18.1,
    "BY": 13.4,
    "BW": 11.3,
    "NI": 8.1,
    "HE": 6.4,
    "RP": 4.2,
    "SN": 4.1,
    "BE": 3.9,
    "SH": 3.0,
    "BB": 2.6,
    "ST": 2.2,
    "TH": 2.1,
    "HH": 1.9,
    "MV": 1.6,
    "SL": 1.0,
    "HB": 0.7,
}

# A few cities per state with their area codes, for phone numbers and domains.
CITIES: dict[str, tuple[tuple[str, str], ...]] = {
    "BW": (
        ("Stuttgart", "0711"),
        ("Karlsruhe", "0721"),
        ("Mannheim", "0621"),
        ("Freiburg", "0761"),
        ("Heidelberg", "06221"),
        ("Tübingen", "07071"),
        ("Ulm", "0731"),
    ),
    "BY": (
        ("München", "089"),
        ("Nürnberg", "0911"),
        ("Augsburg", "0821"),
        ("Regensburg", "0941"),
        ("Würzburg", "0931"),
        ("Bamberg", "0951"),
    ),
    "BE": (("Berlin", "030"),),
    "BB": (("Potsdam", "0331"), ("Cottbus", "0355"), ("Frankfurt (Oder)", "0335")),
    "HB": (("Bremen", "0421"), ("Bremerhaven", "0471")),
    "HH": (("Hamburg", "040"),),
    "HE": (
        ("Frankfurt", "069"),
        ("Wiesbaden", "0611"),
        ("Kassel", "0561"),
        ("Darmstadt", "06151"),
        ("Gießen", "0641"),
        ("Marburg", "06421"),
    ),
    "MV": (("Rostock", "0381"), ("Schwerin", "0385"), ("Greifswald", "03834")),
    "NI": (
        ("Hannover", "0511"),
        ("Braunschweig", "0531"),
        ("Osnabrück", "0541"),
        ("Göttingen", "0551"),
        ("Oldenburg", "0441"),
        ("Lüneburg", "04131"),
    ),
    "NW": (
        ("Köln", "0221"),
        ("Düsseldorf", "0211"),
        ("Essen", "0201"),
        ("Dortmund", "0231"),
        ("Bielefeld", "0521"),
        ("Münster", "0251"),
        ("Bonn", "0228"),
        ("Bochum", "0234"),
        ("Aachen", "0241"),
        ("Lüdenscheid", "02351"),
    ),
    "RP": (
        ("Mainz", "06131"),
        ("Koblenz", "0261"),
        ("Trier", "0651"),
        ("Kaiserslautern", "0631"),
    ),
    "SL": (("Saarbrücken", "0681"), ("Saarlouis", "06831")),
    "SN": (("Dresden", "0351"), ("Leipzig", "0341"), ("Chemnitz", "0371")),
    "ST": (("Magdeburg", "0391"), ("Halle (Saale)", "0345")),
    "SH": (("Kiel", "0431"), ("Lübeck", "0451"), ("Flensburg", "0461")),
    "TH": (("Erfurt", "0361"), ("Jena", "03641"), ("Weimar", "03643")),
}

MOBILE_PREFIXES = ("0151", "0152", "0157", "0160", "0162", "0170", "0171", "0176")

# Names by origin, as they appear among psychotherapists in Germany today.
FEMALE_FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "de": tuple(
        """
        Anna Julia Katharina Sabine Susanne Petra Andrea Claudia Stefanie Nicole
        Christine Birgit Martina Kerstin Anja Heike Silke Britta Dörte Bärbel
        Jördis Gesine Ulrike Friederike Johanna Lea Laura Lena Sophie Miriam
        Svenja Wiebke Maren Inga Frauke Antje Regine Henrike Mareike Sünje Käthe
        Hannelore Jutta Charlotte Anna-Lena Marie-Luise Ann-Kathrin Eva-Maria
        Anne-Sophie Lisa-Marie
        """.split()
    ),
    "tr": tuple(
        """
        Ayşe Zeynep Elif Emine Merve Büşra Derya Gülşen Özlem Sibel Dilek Melek
        Aylin Hülya
        """.split()
    ),
    "pl": tuple(
        """
        Agnieszka Katarzyna Małgorzata Joanna Magdalena Monika Dorota Ewa
        Justyna Beata
        """.split()
    ),
    "ru": tuple(
        """
        Olga Tatjana Swetlana Natalia Irina Jelena Anastasia Ljudmila Oksana
        Xenia Walentina
        """.split()
    ),
    "other": tuple(
        "Giulia Francesca Sofia Leyla Maryam Shirin Lan Eleni Despina Amira".split()
    ),
}

MALE_FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "de": tuple(
        """
        Jürgen Sören Jörg Björn Günter Uwe Thomas Michael Andreas Stefan Frank
        Markus Christian Martin Matthias Tobias Florian Sebastian Jan Jens Lars
        Nils Malte Hauke Till Moritz Felix Jonas Benedikt Rüdiger Jörn Bernd
        Dirk Ralf Holger Volker Götz Hendrik Ole Mathis Klaus-Dieter
        Hans-Jürgen Karl-Heinz Jan-Hendrik Hans-Peter
        """.split()
    ),
    "tr": tuple(
        """
        Mehmet Mustafa Ahmet Emre Burak Can Murat Serkan Hakan Kemal Özgür Tolga
        Barış
        """.split()
    ),
    "pl": tuple(
        """
        Piotr Krzysztof Tomasz Paweł Marek Michał Łukasz Jakub Grzegorz Wojciech
        """.split()
    ),
    "ru": tuple(
        """
        Sergej Dmitri Alexej Andrej Wladimir Juri Nikolai Maxim Pawel Viktor
        Waldemar
        """.split()
    ),
    "other": tuple(
        "Marco Luca Giorgos Dimitrios Ali Reza Karim Minh Duc Samir".split()
    ),
}

_GERMAN_LAST_NAMES = (
    *"""
    Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann
    Schäfer Koch Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann
    Braun Krüger Hofmann Hartmann Lange Schmitt Werner Schmitz Krause Meier
    Lehmann Schulze Köhler Herrmann König Walter Huber Kaiser Fuchs Peters
    Scholz Möller Weiß Jung Hahn Schubert Vogel Friedrich Keller Günther Berger
    Winkler Roth Beck Lorenz Baumann Franke Albrecht Böhm Winter Krämer Vogt
    Jäger Sommer Groß Seidel Brandt Haas Dietrich Ziegler Kühn Engel Horn
    Bergmann Pfeiffer Löffler Großmann Rößler Strauß Nußbaum Preuß Heß Süß
    Brüggemann Dürr Janßen Thießen Friesen Neufeld Klassen Müller-Lüdenscheidt
    """.split(),
    "von Bülow",
    "von der Heide",
)

_TURKISH_LAST_NAMES = """
    Öztürk Yılmaz Yilmaz Kaya Demir Şahin Çelik Yıldız Aydın Özdemir Arslan
    Doğan Kılıç Çetin Koç Kurt Özkan Polat Güneş Korkmaz
    """.split()

# (male form, female form); most surnames have one form for both.
LAST_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "de": tuple((name, name) for name in _GERMAN_LAST_NAMES),
    "tr": tuple((name, name) for name in _TURKISH_LAST_NAMES),
    "pl": (
        ("Kowalski", "Kowalska"),
        ("Nowak", "Nowak"),
        ("Wiśniewski", "Wiśniewska"),
        ("Wójcik", "Wójcik"),
        ("Kowalczyk", "Kowalczyk"),
        ("Kamiński", "Kamińska"),
        ("Lewandowski", "Lewandowska"),
        ("Zieliński", "Zielińska"),
        ("Szymański", "Szymańska"),
        ("Woźniak", "Woźniak"),
        ("Dąbrowski", "Dąbrowska"),
        ("Kozłowski", "Kozłowska"),
        ("Mazur", "Mazur"),
        ("Schimanski", "Schimanski"),
        ("Nowakowski", "Nowakowska"),
    ),
    "ru": (
        ("Iwanow", "Iwanowa"),
        ("Petrow", "Petrowa"),
        ("Smirnow", "Smirnowa"),
        ("Kusnezow", "Kusnezowa"),
        ("Popow", "Popowa"),
        ("Sokolow", "Sokolowa"),
        ("Lebedew", "Lebedewa"),
        ("Morosow", "Morosowa"),
        ("Wolkow", "Wolkowa"),
        ("Fedorow", "Fedorowa"),
    ),
    "other": (
        ("Rossi", "Rossi"),
        ("Esposito", "Esposito"),
        ("Romano", "Romano"),
        ("Papadopoulos", "Papadopoulou"),
        ("Georgiou", "Georgiou"),
        ("Nikolaidis", "Nikolaidou"),
        ("Haddad", "Haddad"),
        ("Hosseini", "Hosseini"),
        ("Karimi", "Karimi"),
        ("Nguyen", "Nguyen"),
        ("Tran", "Tran"),
    ),
}

ORIGINS = ("de", "tr", "pl", "ru", "other")
ORIGIN_WEIGHTS = (80, 7, 5, 5, 3)

# Titles as written before the name; most therapists carry none.
TITLES = (None, "Dr.", "Dipl.-Psych.", "Prof. Dr.")
TITLE_WEIGHTS = (56, 26, 16, 2)

BLOCKED_REASONS = (
    "Praxis geschlossen",
    "Möchte keine Anfragen mehr erhalten",
    "Ruhestand, Kassensitz abgegeben",
    "Elternzeit bis auf Weiteres",
    "Auf eigenen Wunsch gesperrt (Beschwerde über zu viele Anrufe)",
    "Nimmt nur noch Privatpatient:innen an",
    "Langfristig erkrankt, Praxisvertretung ohne freie Plätze",
)

# ICD-10-GM codes seen in outpatient psychotherapy, roughly by frequency.
DIAGNOSES: dict[str, int] = {
    "F32.1": 22,
    "F33.1": 16,
    "F41.1": 10,
    "F43.1": 9,
    "F43.2": 8,
    "F40.1": 6,
    "F41.0": 5,
    "F32.2": 4,
    "F33.2": 3,
    "F40.01": 3,
    "F41.2": 3,
    "F42.0": 2,
    "F42.2": 2,
    "F45.1": 2,
    "F34.1": 2,
    "F50.0": 1,
    "F50.2": 1,
    "F60.31": 2,
    "F60.3": 1,
    "F90.0": 1,
}

GENDERS = ("weiblich", "männlich", "divers")
GENDER_WEIGHTS = (62, 35, 3)

TIME_AVAILABILITIES = (
    "flexibel",
    "flexibel, bevorzugt vormittags",
    "Mo–Mi vormittags",
    "Mo–Fr 8–12 Uhr",
    "ab 17 Uhr",
    "ab 16:30 Uhr (berufstätig)",
    "Di und Do ab 15 Uhr",
    "nur nachmittags",
    "vormittags, außer freitags",
    "nicht mittwochs",
    "Mo, Mi, Fr ganztägig",
    "Schichtdienst, wechselnd – bitte vorher absprechen",
    "werktags nach 18 Uhr",
    "Do und Fr ganztägig",
    "mittags 12–14 Uhr",
)

# Unambiguous characters (no 0/O, 1/I/L) for patient pseudonyms.
PSEUDONYM_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

EMAIL_PROVIDERS = ("mail.example", "post.example", "praxisnetz.example")

# Letters that NFKD does not reduce to ASCII on its own.
_TRANSLITERATION = str.maketrans(
    {
        "ä": "ae",
        "ö": "oe",
        "ü": "ue",
        "Ä": "Ae",
        "Ö": "Oe",
        "Ü": "Ue",
        "ß": "ss",
        "ł": "l",
        "Ł": "L",
        "ı": "i",
        "ø": "o",
        "đ": "d",
    }
)


@dataclass(frozen=True)
class PatientProfile:
    """What the matching service tells about one patient, shared by requests."""

    pseudonym: str
    age: int
    gender: str
    diagnosis_code: str
    time_availability: str
    registered_at: datetime


def transliterate(text: str) -> str:
    """Turn a German name into lowercase ASCII for an address (ä→ae, ß→ss)."""
    text = text.translate(_TRANSLITERATION)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "-", text.lower())
    return text.strip("-")


def seed_demo_data(
    session: Session,
    clock: Clock,
    therapists: int = 300,
    requests: int = 3000,
    seed: int = 42,
) -> dict[str, int]:
    """Insert demo therapists and open placement requests; return the counts.

    The caller commits. On a table that already holds demo rows the new
    external ids continue after the highest existing one.
    """
    if therapists < 0 or requests < 0:
        raise ValueError("counts must not be negative")
    if requests and not therapists:
        raise ValueError("placement requests need at least one therapist")

    rng = random.Random(seed)
    now = clock.now().replace(microsecond=0)
    therapist_start = _next_number(session, Therapist, THERAPIST_ID_PREFIX)
    request_start = _next_number(session, PlacementRequest, REQUEST_ID_PREFIX)

    # Therapists first: their ids are needed for the requests.
    # Stored addresses are taken too, so a forced second run adds no twins.
    used_emails = set(
        session.scalars(select(Therapist.email).where(Therapist.email.is_not(None)))
    )
    therapist_rows = _therapist_rows(rng, now, therapists, therapist_start, used_emails)
    therapist_ids: list[int] = []
    if therapist_rows:
        result = session.execute(
            insert(Therapist).returning(Therapist.id, sort_by_parameter_order=True),
            therapist_rows,
        )
        therapist_ids = list(result.scalars())

    # Requests: each patient is proposed to one to three therapists.
    weights = _request_weights(rng, therapist_rows)
    assignments = _assign_requests(rng, now, weights, requests)
    request_rows = [
        _request_row(rng, now, request_start + number, therapist_ids[index], patient)
        for number, (index, patient) in enumerate(assignments)
    ]
    if request_rows:
        session.execute(insert(PlacementRequest), request_rows)
    session.flush()

    counts = _counts(now, therapist_rows, assignments)
    log.info(
        "seeded demo data: %s therapists, %s placement requests, %s patients (seed %s)",
        counts["therapists"],
        counts["placement_requests"],
        counts["patients"],
        seed,
    )
    return counts


def _next_number(session: Session, model: type, prefix: str) -> int:
    highest = session.scalar(
        select(func.max(model.external_id)).where(model.external_id.like(f"{prefix}%"))
    )
    if highest is None:
        return 1
    return int(highest.removeprefix(prefix)) + 1


def _therapist_rows(
    rng: random.Random,
    now: datetime,
    count: int,
    start: int,
    used_emails: set[str],
) -> list[dict]:
    today = now.replace(tzinfo=UTC).astimezone(BERLIN).date()
    states = list(FEDERAL_STATES)
    state_weights = list(FEDERAL_STATES.values())
    rows = []
    for number in range(start, start + count):
        state = rng.choices(states, state_weights)[0]
        city, area_code = rng.choice(CITIES[state])
        salutation, first_name, last_name = _name(rng)
        has_email = rng.random() >= 0.12
        email = (
            _email(rng, first_name, last_name, city, used_emails) if has_email else None
        )
        blocked = rng.random() < 0.02
        created_at = now - timedelta(minutes=rng.randint(30 * 1440, 900 * 1440))
        rows.append(
            {
                "external_id": f"{THERAPIST_ID_PREFIX}{number:06d}",
                "salutation": salutation,
                "title": rng.choices(TITLES, TITLE_WEIGHTS)[0],
                "first_name": first_name,
                "last_name": last_name,
                "email": email,
                # Without email the phone is the only way in, so keep one.
                "phone": _phone(rng, area_code)
                if not has_email or rng.random() >= 0.03
                else None,
                "federal_state": state,
                "phone_availability": _phone_windows(rng),
                "potentially_available": rng.random() < 0.30,
                "knows_platform": rng.random() < 0.40,
                "next_contact_after": _next_contact_after(rng, today),
                "blocked": blocked,
                "blocked_reason": rng.choice(BLOCKED_REASONS) if blocked else None,
                "cap_lock": 0,
                "created_at": created_at,
                "updated_at": created_at,
            }
        )
    return rows


def _name(rng: random.Random) -> tuple[str | None, str, str]:
    # About three in four psychotherapists in Germany are women.
    sex = "f" if rng.random() < 0.74 else "m"
    salutation = None if rng.random() < 0.03 else ("Frau" if sex == "f" else "Herr")
    origin = rng.choices(ORIGINS, ORIGIN_WEIGHTS)[0]
    first_names = FEMALE_FIRST_NAMES if sex == "f" else MALE_FIRST_NAMES
    first_name = rng.choice(first_names[origin])

    # Marriage mixes origins; some keep both names joined by a hyphen.
    last_origin = origin if rng.random() < 0.85 else rng.choice(ORIGINS)
    last_name = _last_name(rng, last_origin, sex)
    if rng.random() < 0.07 and "-" not in last_name and " " not in last_name:
        second = _last_name(rng, rng.choices(ORIGINS, ORIGIN_WEIGHTS)[0], sex)
        if second != last_name and "-" not in second and " " not in second:
            last_name = f"{last_name}-{second}"
    return salutation, first_name, last_name


def _last_name(rng: random.Random, origin: str, sex: str) -> str:
    male, female = rng.choice(LAST_NAMES[origin])
    return female if sex == "f" else male


def _email(
    rng: random.Random,
    first_name: str,
    last_name: str,
    city: str,
    used: set[str],
) -> str:
    first = transliterate(first_name)
    last = transliterate(last_name)
    dotted = f"{first}.{last}"
    candidates = [
        f"info@praxis-{last}.example",
        f"kontakt@psychotherapie-{last}.example",
        f"praxis@{first}-{last}.example",
        f"{dotted}@psychotherapie-{transliterate(city)}.example",
        f"{first[0]}.{last}@{rng.choice(EMAIL_PROVIDERS)}",
        f"{dotted}@{rng.choice(EMAIL_PROVIDERS)}",
        f"termine@praxis-{first}-{last}.example",
    ]
    rng.shuffle(candidates)
    for candidate in candidates:
        if candidate not in used:
            used.add(candidate)
            return candidate

    # Namesakes in the same city took every pattern: number the practice.
    suffix = 2
    while f"info@praxis-{last}{suffix}.example" in used:
        suffix += 1
    address = f"info@praxis-{last}{suffix}.example"
    used.add(address)
    return address


def _phone(rng: random.Random, area_code: str) -> str:
    if rng.random() < 0.06:
        prefix = rng.choice(MOBILE_PREFIXES)
        subscriber = _digits(rng, rng.choice((7, 8)))
        if rng.random() < 0.5:
            return f"+49 {prefix[1:]} {subscriber}"
        return f"{prefix} {subscriber}"

    # Area code and subscriber number together mostly have 9 or 10 digits
    # after the leading zero: 030 1234567, 06151 123456.
    length = rng.randint(9, 10) - (len(area_code) - 1)
    subscriber = _digits(rng, length)
    style = rng.choices(
        ("space", "slash", "plus", "paren", "extension"), (50, 15, 22, 5, 8)
    )[0]
    if style == "slash":
        return f"{area_code}/{subscriber}"
    if style == "plus":
        return f"+49 {area_code[1:]} {subscriber}"
    if style == "paren":
        return f"({area_code}) {subscriber}"
    if style == "extension":
        return f"{area_code} {subscriber[:-1]}-{subscriber[-1]}"
    return f"{area_code} {subscriber}"


def _digits(rng: random.Random, length: int) -> str:
    first = str(rng.randint(2, 9))
    return first + "".join(str(rng.randint(0, 9)) for _ in range(length - 1))


def _phone_windows(rng: random.Random) -> list[dict]:
    count = rng.choices((1, 2, 3), (35, 45, 20))[0]
    # Mostly working days; a few practices take calls on Saturday morning.
    weekdays = set()
    while len(weekdays) < count:
        weekdays.add(rng.choices(range(6), (21, 21, 20, 21, 15, 2))[0])

    windows = []
    for weekday in sorted(weekdays):
        # Phone hours fill the gaps between 50-minute sessions.
        hour = rng.choice((8, 8, 9, 10, 11, 12, 12, 13, 13, 14, 15, 16, 17, 18))
        if weekday == 5:
            hour = rng.choice((9, 10, 11))
        minute = rng.choice((0, 0, 0, 0, 5, 10, 15, 30, 30, 45, 50))
        length = rng.choice((25, 25, 30, 30, 45, 50, 50))
        start = hour * 60 + minute
        end = start + length
        windows.append({"weekday": weekday, "start": _hhmm(start), "end": _hhmm(end)})
    return windows


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _next_contact_after(rng: random.Random, today: date) -> date | None:
    roll = rng.random()
    if roll < 0.05:
        # Declined recently: cooling period in the coming four weeks.
        return today + timedelta(days=rng.randint(1, 28))
    if roll < 0.08:
        # A cooling period that has already ended.
        return today - timedelta(days=rng.randint(1, 90))
    return None


def _request_weights(rng: random.Random, therapist_rows: list[dict]) -> list[float]:
    """Give each therapist a share of requests: most a few, some very many."""
    weights = []
    for row in therapist_rows:
        roll = rng.random()
        if roll < 0.15:
            weight = 0.0
        elif roll < 0.82:
            weight = rng.lognormvariate(0.0, 0.6)
        else:
            # Sought-after practices in big cities collect long queues.
            weight = min(rng.lognormvariate(1.8, 0.3), 12.0)
        if row["blocked"] or row["next_contact_after"]:
            # The matching service proposes fewer patients to them, not none.
            weight *= 0.3
        weights.append(weight)
    if therapist_rows and not any(weights):
        weights[0] = 1.0
    return weights


def _assign_requests(
    rng: random.Random, now: datetime, weights: list[float], total: int
) -> list[tuple[int, PatientProfile]]:
    indices = range(len(weights))
    cumulative = list(itertools.accumulate(weights))
    eligible = sum(1 for weight in weights if weight > 0)
    used_pseudonyms: set[str] = set()
    assignments: list[tuple[int, PatientProfile]] = []
    while len(assignments) < total:
        patient = _patient(rng, now, used_pseudonyms)
        wanted = min(
            rng.choices((1, 2, 3), (70, 22, 8))[0],
            total - len(assignments),
            eligible,
        )
        chosen: list[int] = []
        while len(chosen) < wanted:
            index = rng.choices(indices, cum_weights=cumulative)[0]
            if index not in chosen:
                chosen.append(index)
        assignments.extend((index, patient) for index in chosen)
    return assignments


def _patient(rng: random.Random, now: datetime, used: set[str]) -> PatientProfile:
    pseudonym = ""
    while not pseudonym or pseudonym in used:
        pseudonym = "P-" + "".join(rng.choices(PSEUDONYM_ALPHABET, k=5))
    used.add(pseudonym)
    registered_at = now - timedelta(minutes=rng.randint(1 * 1440, 120 * 1440))
    return PatientProfile(
        pseudonym=pseudonym,
        # Most patients seeking outpatient therapy are between 20 and 50.
        age=round(rng.triangular(18, 75, 29)),
        gender=rng.choices(GENDERS, GENDER_WEIGHTS)[0],
        diagnosis_code=rng.choices(list(DIAGNOSES), list(DIAGNOSES.values()))[0],
        time_availability=rng.choice(TIME_AVAILABILITIES),
        registered_at=registered_at.replace(second=0, microsecond=0),
    )


def _request_row(
    rng: random.Random,
    now: datetime,
    number: int,
    therapist_id: int,
    patient: PatientProfile,
) -> dict:
    # Proposed to the therapist within a few days of registration.
    waited = now - patient.registered_at
    delay = timedelta(
        minutes=rng.randint(10, max(10, min(4 * 1440, waited.days * 1440)))
    )
    created_at = min(patient.registered_at + delay, now)
    return {
        "external_id": f"{REQUEST_ID_PREFIX}{number:07d}",
        "therapist_id": therapist_id,
        "patient_pseudonym": patient.pseudonym,
        "patient_age": patient.age,
        "patient_gender": patient.gender,
        "diagnosis_code": patient.diagnosis_code,
        "time_availability": patient.time_availability,
        "patient_registered_at": patient.registered_at,
        "status": PlacementStatus.OPEN.value,
        "created_at": created_at,
        "updated_at": created_at,
    }


def _counts(
    now: datetime,
    therapist_rows: list[dict],
    assignments: list[tuple[int, PatientProfile]],
) -> dict[str, int]:
    today = now.replace(tzinfo=UTC).astimezone(BERLIN).date()
    per_therapist = [0] * len(therapist_rows)
    for index, _ in assignments:
        per_therapist[index] += 1
    return {
        "therapists": len(therapist_rows),
        "placement_requests": len(assignments),
        "patients": len({patient.pseudonym for _, patient in assignments}),
        "therapists_without_email": sum(
            1 for row in therapist_rows if row["email"] is None
        ),
        "therapists_blocked": sum(1 for row in therapist_rows if row["blocked"]),
        "therapists_in_cooling_period": sum(
            1
            for row in therapist_rows
            if row["next_contact_after"] and row["next_contact_after"] > today
        ),
        "therapists_with_requests": sum(1 for count in per_therapist if count),
        "therapists_with_more_than_6_requests": sum(
            1 for count in per_therapist if count > 6
        ),
        "max_requests_per_therapist": max(per_therapist, default=0),
    }
