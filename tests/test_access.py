"""Every page and API route needs a login or a token, except a known few."""

import re

import pytest

PUBLIC = {
    "auth.login",
    "ops.health",
    "ops.metrics",
    "api.openapi_document",
    "calendars.ics_feed",
    "dashboard.vendor_htmx",
    "supervision.vendor_chartjs",
    "static",
}


def routes(app):
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods:
            yield rule


def filled(rule) -> str:
    # Any value will do: the login check comes before the lookup.
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", "1", rule.rule)


def test_every_route_but_the_public_ones_wants_a_login(app, client):
    checked = [
        rule
        for rule in routes(app)
        if rule.endpoint not in PUBLIC and not rule.endpoint.startswith("api.")
    ]
    unprotected = []
    for rule in checked:
        response = client.get(filled(rule))
        if response.status_code not in (302, 401, 403):
            unprotected.append((rule.rule, response.status_code))

    assert len(checked) > 20
    assert unprotected == []


def test_every_api_route_wants_a_token(app, client):
    refused = {
        rule.rule: client.get(filled(rule)).status_code
        for rule in routes(app)
        if rule.endpoint.startswith("api.") and rule.endpoint not in PUBLIC
    }

    assert set(refused.values()) == {401}, refused


@pytest.mark.parametrize("endpoint", sorted(PUBLIC - {"static"}))
def test_public_routes_exist(app, endpoint):
    assert any(rule.endpoint == endpoint for rule in app.url_map.iter_rules())
