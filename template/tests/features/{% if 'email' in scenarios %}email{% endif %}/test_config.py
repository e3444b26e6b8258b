"""Email settings: names of the variables, blank values, and values that cannot work together."""

import pytest
from pydantic import ValidationError

from app.features.email.config import EmailSettings


def test_settings_come_from_smtp_variables_and_email_from(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SMTP_HOST": "mail.example.com",
        "SMTP_PORT": "587",
        "SMTP_USERNAME": "mailer",
        "SMTP_PASSWORD": "s3cret",
        "SMTP_STARTTLS": "true",
        "SMTP_TIMEOUT_SECONDS": "3",
        "EMAIL_FROM": "Team <team@example.com>",
    }.items():
        monkeypatch.setenv(name, value)

    settings = EmailSettings()

    assert (settings.host, settings.port, settings.username) == ("mail.example.com", 587, "mailer")
    assert settings.password is not None and settings.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.starttls and not settings.use_tls
    assert settings.timeout_seconds == 3
    assert settings.email_from == "Team <team@example.com>"


def test_blank_credentials_mean_no_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_USERNAME", "")
    monkeypatch.setenv("SMTP_PASSWORD", "")

    settings = EmailSettings()

    assert settings.username is None
    assert settings.password is None


def test_starttls_and_implicit_tls_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="SMTP_STARTTLS and SMTP_USE_TLS are exclusive: set"):
        EmailSettings(starttls=True, use_tls=True)


def test_a_password_without_a_username_is_refused() -> None:
    with pytest.raises(ValidationError, match="set SMTP_USERNAME to log in, or leave SMTP_PASS"):
        EmailSettings(password="s3cret")


@pytest.mark.parametrize("sender", ["no-reply", "Team <>", "jos\u00e9@example.com"])
def test_a_sender_that_is_not_an_ascii_address_is_refused(sender: str) -> None:
    with pytest.raises(ValidationError, match="is not an ASCII email address: set it like"):
        EmailSettings(email_from=sender)
