"""The one error the author's commands raise: printed as ``error: ...`` with exit code 1."""

from __future__ import annotations


class CliError(Exception):
    """A failure to report to the user: the server's message, a local check's, a plugin's.

    ``details`` are extra lines printed under the message (validation errors, log lines);
    ``payload`` is what ``--json`` prints instead (default: the message and details).
    """

    def __init__(
        self,
        message: str,
        details: list[str] | None = None,
        payload: dict[str, object] | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.error_type = error_type
        self.payload = payload
