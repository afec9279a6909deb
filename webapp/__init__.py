"""Communication service: Flask application factory."""

import logging
from typing import Any

from flask import Flask

from webapp.extensions import csrf, db, htmx, limiter, login_manager, migrate
from webapp.settings import PROJECT_ROOT, Settings


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask application from settings and optional overrides."""
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.from_mapping(Settings.from_env().as_mapping())
    if config:
        app.config.update(config)

    _configure_logging(app)
    _init_extensions(app)
    _register_blueprints(app)
    _register_cli(app)
    return app


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def _init_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(
        app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True
    )
    csrf.init_app(app)
    htmx.init_app(app)
    # Login throttling shares the job Redis, so every web process counts.
    app.config.setdefault(
        "RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://"
    )
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Bitte melden Sie sich an."

    from webapp import models  # noqa: F401  (registers the tables)


def _register_blueprints(app: Flask) -> None:
    from webapp.web import register_web

    register_web(app)


def _register_cli(app: Flask) -> None:
    from webapp.cli import register_cli

    register_cli(app)
