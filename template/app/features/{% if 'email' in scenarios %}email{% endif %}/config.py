"""SMTP settings of the email feature, read from `SMTP_*` variables and `EMAIL_FROM`."""

from email.utils import parseaddr
from functools import lru_cache
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.config import settings_getter


class EmailSettings(BaseSettings):
    """Where and how welcome emails are sent. The defaults suit a local SMTP sink on :1025."""

    model_config = SettingsConfigDict(
        env_prefix="SMTP_", env_file=".env", extra="ignore", populate_by_name=True
    )

    host: str = "localhost"
    port: int = Field(default=1025, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    # STARTTLS upgrades a plain connection (usually port 587); USE_TLS speaks TLS from the
    # first byte (usually port 465). A server needs one or the other, never both.
    starttls: bool = False
    use_tls: bool = False
    # Bounds each SMTP step (connect, every command), so a silent server cannot hold a job.
    timeout_seconds: float = Field(default=10.0, gt=0)
    # Not SMTP_-prefixed: it says who the mail is from, not how to reach the server.
    email_from: str = Field(default="no-reply@example.com", validation_alias="EMAIL_FROM")

    @field_validator("username", "password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `SMTP_USERNAME=` in a .env file means "no authentication", not an empty login.
        return None if value == "" else value

    @field_validator("email_from")
    @classmethod
    def _an_ascii_address(cls, value: str) -> str:
        # Else every welcome email would be refused at MAIL FROM, one job at a time.
        local, _, domain = parseaddr(value)[1].rpartition("@")
        if not (local and domain and f"{local}{domain}".isascii()):
            raise ValueError(
                f"EMAIL_FROM={value!r} is not an ASCII email address: set it like "
                "EMAIL_FROM=My Service <no-reply@example.com> (an internationalised domain "
                "in its xn-- form)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # Contradictions that would fail every welcome email, caught before the first one.
        if self.starttls and self.use_tls:
            raise ValueError(
                "SMTP_STARTTLS and SMTP_USE_TLS are exclusive: set SMTP_STARTTLS=true "
                "(port 587) or SMTP_USE_TLS=true (port 465), and the other one to false"
            )
        if self.password is not None and self.username is None:
            raise ValueError(
                "SMTP_PASSWORD is set but SMTP_USERNAME is not, so the password would never "
                "be sent: set SMTP_USERNAME to log in, or leave SMTP_PASSWORD empty"
            )
        return self


@settings_getter
@lru_cache
def get_email_settings() -> EmailSettings:
    return EmailSettings()
