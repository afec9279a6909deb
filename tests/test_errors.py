"""Errors reach users as German pages, and the API as JSON."""

import pytest


def text_of(response) -> str:
    return response.get_data(as_text=True)


def test_unknown_page_is_a_german_404(logged_in_client):
    response = logged_in_client.get("/gibt-es-nicht")

    assert response.status_code == 404
    assert "Seite nicht gefunden" in text_of(response)
    assert "Not Found" not in text_of(response)


def test_wrong_method_is_a_german_405(logged_in_client):
    response = logged_in_client.delete("/emails")

    assert response.status_code == 405
    assert "Aktion nicht erlaubt" in text_of(response)


@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}])
def test_missing_csrf_token_explains_or_reloads(client, coordinator, headers):
    response = client.post("/login", data={"email": "x@example.org"}, headers=headers)

    assert response.status_code == 400
    if headers:
        assert response.headers["HX-Refresh"] == "true"
    else:
        assert "Formular war abgelaufen" in text_of(response)


def test_unexpected_error_is_a_german_500(app, logged_in_client, monkeypatch):
    import webapp.web.mailbox as mailbox

    def broken():
        raise RuntimeError("kaputt")

    monkeypatch.setattr(mailbox, "_folder", broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    response = logged_in_client.get("/demo-postfach/")

    assert response.status_code == 500
    assert "Interner Fehler" in text_of(response)
    assert "kaputt" not in text_of(response)
