"""Request and response bodies of `/users`."""

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, StringConstraints

from app.core.validation import storable


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

# What breaks one line of text: C0 and C1 controls (\x85 is NEL) and the Unicode line and
# paragraph separators, which mail clients, like `str.splitlines`, show as line breaks.
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _one_line(name: str) -> str:
    # The name is the greeting line of an email this service sends to any address a sign-up
    # names: a line break in it would let a stranger write paragraphs of their own in it.
    if _LINE_BREAKING.search(name):
        raise ValueError("must be one line of text, without control characters or line breaks")
    return name


# The constraints come first: after a validator, pydantic checks lengths before stripping.
PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(storable),
    AfterValidator(_one_line),
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
