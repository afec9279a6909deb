"""Domain exceptions of the communication service."""


class CommsError(Exception):
    """Base class of the service's domain errors."""


class WeeklyCapExceeded(CommsError):
    """The therapist already had a request email in the cap window."""

    def __init__(self, therapist_id: int, email_id: int | None = None) -> None:
        super().__init__(f"weekly cap reached for therapist {therapist_id}")
        self.therapist_id = therapist_id
        self.email_id = email_id


class InvalidTransition(CommsError):
    """The email is not in a status that allows the action."""


class ValidationFailed(CommsError):
    """Input data broke a rule; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class IntakeConflict(CommsError):
    """The input contradicts what is already stored; `field` names where."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SmtpFailure(CommsError):
    """A delivery attempt failed; carries the server's code and reply."""

    def __init__(self, code: int | None, reply: str) -> None:
        super().__init__(f"{code} {reply}")
        self.code = code
        self.reply = reply


class TransientSmtpFailure(SmtpFailure):
    """Worth retrying: connection trouble, timeouts, 4xx replies."""


class PermanentSmtpFailure(SmtpFailure):
    """Never retried: 5xx replies, a rejected address."""
