"""The one error type of submission, status queries and parameter files."""


class SubmitError(RuntimeError):
    """Submission, a status query or a parameter file failed; the message names the pipeline, run or parameter and
    what to do."""
