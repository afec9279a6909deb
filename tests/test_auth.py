"""Login, logout and the login requirement of dashboard pages."""

import pytest

from tests.conftest import create_user


@pytest.mark.parametrize("path", ["/", "/emails"])
def test_pages_need_login(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_with_right_password_opens_dashboard(logged_in_client):
    response = logged_in_client.get("/")

    assert response.status_code == 200
    assert "Entwürfe" in response.get_data(as_text=True)


def test_login_with_wrong_password_shows_error_beside_field(app, client, coordinator):
    app.config["WTF_CSRF_ENABLED"] = False
    response = client.post(
        "/login", data={"email": coordinator.email, "password": "falsch"}
    )
    app.config["WTF_CSRF_ENABLED"] = True

    assert response.status_code == 200
    assert "E-Mail oder Passwort ist falsch." in response.get_data(as_text=True)


def test_login_form_without_csrf_token_is_refused(client, coordinator):
    response = client.post(
        "/login", data={"email": coordinator.email, "password": "geheim-123"}
    )

    assert response.status_code == 400


def test_repeated_failed_logins_are_throttled(app, client, coordinator):
    app.config["WTF_CSRF_ENABLED"] = False
    wrong = {"email": coordinator.email, "password": "falsch"}
    statuses = [client.post("/login", data=wrong).status_code for _ in range(11)]
    response = client.post("/login", data=wrong)
    app.config["WTF_CSRF_ENABLED"] = True

    assert statuses[:10] == [200] * 10
    assert response.status_code == 429
    assert "Zu viele fehlgeschlagene Anmeldeversuche" in response.get_data(as_text=True)


def test_throttling_one_account_leaves_colleagues_alone(app, client, coordinator):
    create_user("kollegin@example.org", name="Kai Kollegin")
    app.config["WTF_CSRF_ENABLED"] = False
    wrong = {"email": coordinator.email, "password": "falsch"}
    for _ in range(11):
        client.post("/login", data=wrong)
    colleague = client.post(
        "/login", data={"email": "kollegin@example.org", "password": "geheim-123"}
    )
    app.config["WTF_CSRF_ENABLED"] = True

    assert colleague.status_code == 302


def test_successful_logins_are_not_counted(app, client, coordinator):
    app.config["WTF_CSRF_ENABLED"] = False
    right = {"email": coordinator.email, "password": "geheim-123"}
    statuses = [client.post("/login", data=right).status_code for _ in range(12)]
    app.config["WTF_CSRF_ENABLED"] = True

    assert set(statuses) == {302}
