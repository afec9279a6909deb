"""The Alembic migration builds exactly the models' schema on both databases."""

import os
import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from webapp import create_app
from webapp.extensions import db


def _postgres_url():
    base = os.environ.get("TEST_DATABASE_URL")
    if not base or not base.startswith("postgresql"):
        pytest.skip("TEST_DATABASE_URL does not point at PostgreSQL")
    name = f"comms_migration_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(base).set(database=name)
    return url.render_as_string(hide_password=False), admin, name


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    """An empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migration.db"
        return
    url, admin, name = _postgres_url()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_matches_models_and_downgrade_empties(empty_database, redis_url):
    # The login limiter is shared by every app; keep it on the test Redis.
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": empty_database, "REDIS_URL": redis_url}
    )

    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn)
            differences = compare_metadata(context, db.metadata)
        downgrade(revision="base")
        tables = sa.inspect(db.engine).get_table_names()
        db.engine.dispose()

    assert differences == []
    assert set(tables) <= {"alembic_version"}
