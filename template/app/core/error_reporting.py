"""Error reporting to Sentry: on when SENTRY_DSN is set, nothing sent otherwise, no personal data."""

import logging
import uuid

from app.core.config import get_security_settings, get_settings

logger = logging.getLogger(__name__)
_enabled = False  # the SDK is imported once a DSN is set: a service without one pays nothing


def configure_error_reporting() -> bool:
    """Start reporting in this process when SENTRY_DSN is set; returns whether it is on."""
    global _enabled
    settings = get_settings()
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value():
        return False
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment or get_security_settings().environment,
        release=settings.sentry_release or None,  # an empty line in .env means unset
        # What clients sent stays here: no user, cookies, headers, query strings or bodies,
        # and no local variables in stack frames (a job's arguments are someone's email, a
        # message). Every category is named: sentry-sdk 3 collects what is left out.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "off"}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "graphql": {"document": False, "variables": False},
            "gen_ai": {"inputs": False, "outputs": False},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
        },
        # Reported explicitly (`report_request_error`, `report_job_failure`), each once: the
        # integrations that would hook FastAPI, Celery and every error log line too are off,
        # and log lines are only breadcrumbs of an event.
        auto_enabling_integrations=False,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
        traces_sample_rate=None,  # performance tracing is OpenTelemetry's job here
    )
    _enabled = True
    logger.info("error reporting is on")
    return True


def reporting_enabled() -> bool:
    return _enabled


def stop_error_reporting() -> None:
    """Send what is pending and report nothing more (tests, or a process on its way out)."""
    global _enabled
    if _enabled:
        import sentry_sdk

        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        _enabled = False


def report_request_error(
    exc: BaseException, method: str, route: str, request_id: str | None
) -> None:
    """An unhandled error while answering a request (the client got a 500)."""
    if not _enabled:
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.set_tag("http.method", method)
        scope.set_tag("http.route", route)  # the template: ids in paths are not sent
        if request_id:
            scope.set_tag("request_id", request_id)
        scope.capture_exception(exc)


def report_job_failure(
    kind: str, job_id: uuid.UUID, error: str, exc: BaseException | None = None
) -> None:
    """A job that failed for good: no attempt is left, or retrying cannot help."""
    if not _enabled:
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.set_tag("job.kind", kind)
        scope.set_tag("job.id", str(job_id))
        # One issue per kind and error type, not one per job.
        scope.fingerprint = ["job-failed", kind, type(exc).__name__ if exc else error[:100]]
        if exc is not None:
            scope.capture_exception(exc)
        else:
            scope.capture_message(f"job {kind} failed: {error}", level="error")
