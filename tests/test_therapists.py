"""The therapist directory finds people by name and links their calendar."""

from datetime import date

from tests.factories import make_request, make_therapist


def text_of(response) -> str:
    return response.get_data(as_text=True)


def test_search_finds_names_with_umlauts_and_full_names(logged_in_client):
    weiss = make_therapist(first_name="Jürgen", last_name="Weiß", salutation="Herr")
    make_request(weiss)
    make_therapist(first_name="Anna", last_name="Öztürk")

    by_last = text_of(logged_in_client.get("/therapeuten?q=Wei"))
    by_full = text_of(logged_in_client.get("/therapeuten?q=Jürgen Weiß"))

    assert "Dr. Jürgen Weiß" in by_last
    assert "Öztürk" not in by_last
    assert f"/therapeuten/{weiss.id}/kalender" in by_last
    assert "1 Treffer" in by_full


def test_search_treats_like_wildcards_as_text(logged_in_client):
    make_therapist(last_name="Weiß")

    assert "Keine Therapeut:in gefunden." in text_of(
        logged_in_client.get("/therapeuten?q=%25")
    )


def test_htmx_search_returns_only_the_results(logged_in_client):
    make_therapist(last_name="Weiß", next_contact_after=date(2099, 1, 2))

    response = logged_in_client.get(
        "/therapeuten?q=Wei", headers={"HX-Request": "true"}
    )

    html = text_of(response)
    assert html.lstrip().startswith('<section id="therapist-results">')
    assert "Kontakt wieder ab 02.01.2099" in html
