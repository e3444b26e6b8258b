"""Prometheus counters of email delivery attempts."""

from prometheus_client import Counter

EMAILS_SENT = Counter(
    "emails_sent",
    "Emails the SMTP server accepted",
    ["template"],
)
# One increment per failed attempt: "transient" ones are retried, "permanent" ones are not.
EMAILS_FAILED = Counter(
    "emails_failed",
    "Email delivery attempts that failed",
    ["template", "reason"],
)
