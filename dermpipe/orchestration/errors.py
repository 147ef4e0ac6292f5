"""The one error type of submission, status queries and parameter files."""


class SubmitError(RuntimeError):
    """Submission, a status query or a parameter file failed; the message names the pipeline, run or parameter and
    what to do."""


def remote_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the backend said no or could not be reached" (shown as errors, not tracebacks)."""
    import urllib3
    from google.api_core import exceptions as google_errors
    from google.auth import exceptions as auth_errors
    from kfp_server_api import ApiException

    return (SubmitError, ApiException, urllib3.exceptions.HTTPError, google_errors.GoogleAPIError,
            auth_errors.GoogleAuthError)
