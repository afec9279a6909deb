"""Bearer tokens for other services; only a SHA-256 hash is stored."""

import hashlib
import logging
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.clock import Clock, system_clock
from webapp.exceptions import ValidationFailed
from webapp.models import ApiToken

log = logging.getLogger(__name__)

# 32 random bytes: far beyond guessing, so a fast hash is enough to store.
TOKEN_BYTES = 32


def hash_token(secret: str) -> str:
    """Return the hex SHA-256 digest under which a token is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_api_token(
    session: Session, name: str, clock: Clock = system_clock
) -> tuple[ApiToken, str]:
    """Add a new token to the session; return it with its secret, shown once."""
    name = name.strip()
    if not name or len(name) > 120:
        raise ValidationFailed("name", "muss 1 bis 120 Zeichen lang sein")

    secret = secrets.token_urlsafe(TOKEN_BYTES)
    token = ApiToken(name=name, token_hash=hash_token(secret), created_at=clock.now())
    session.add(token)
    session.flush()
    log.info("api token %s created", token.id)
    return token, secret


def verify_api_token(session: Session, secret: str) -> ApiToken | None:
    """Return the live token matching the presented secret, or None."""
    if not secret:
        return None
    return session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(secret),
            ApiToken.revoked_at.is_(None),
        )
    )


def revoke_api_token(
    session: Session, token_id: int, clock: Clock = system_clock
) -> ApiToken | None:
    """Mark a token revoked so it no longer authenticates; None if unknown."""
    token = session.get(ApiToken, token_id)
    if token is None:
        return None
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        log.info("api token %s revoked", token.id)
    return token
