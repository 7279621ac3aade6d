"""One email address, checked by a real parser (``email-validator``; syntax only, no DNS).

The shop's ``Email`` field and the mailer both use it, so a value such as
``a@example.org, b@example.org`` is refused where it enters (422) and can never become two SMTP
recipients later.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

__all__ = ["one_address"]


def one_address(text: str) -> str:
    """``text`` unchanged when it is exactly one email address, else ValueError saying why."""
    try:
        # test_environment: RFC 2606's ``.test`` names are accepted (tests, walkthroughs); the
        # other reserved names (localhost, .invalid, .local...) are still refused.
        validate_email(text, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"not one email address: {exc}") from None
    return text
