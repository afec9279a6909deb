"""JSON API for the platform's other services."""

from flask import Blueprint

from webapp.extensions import csrf

api = Blueprint("api", __name__)
csrf.exempt(api)
