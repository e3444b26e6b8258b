"""Request and response bodies of `/users`."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, StringConstraints


def _deliverable(email: str) -> str:
    # An internationalised domain is fine (it is sent as punycode), but a mailbox name
    # beyond ASCII needs SMTPUTF8 from every server on the way: refused now, not failed later.
    if not email.rpartition("@")[0].isascii():
        raise ValueError(
            "the part before the @ must be ASCII: this service cannot deliver to "
            "internationalised mailbox names (they need SMTPUTF8); use an ASCII address"
        )
    return email.lower()  # so "Ada@Example.com" and "ada@example.com" are one account


NormalisedEmail = Annotated[EmailStr, AfterValidator(_deliverable)]
# No control characters: the name goes into the Subject header and the email body.
PersonName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]


class UserCreate(BaseModel):
    email: NormalisedEmail
    name: PersonName


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    welcome_email_job_id: uuid.UUID | None
    welcome_email_sent_at: datetime | None
    created_at: datetime
