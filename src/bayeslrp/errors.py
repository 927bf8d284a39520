"""The one exception type for errors a user can cause and fix."""


class BayesLRPError(Exception):
    """A user-facing error: bad config or CLI value, missing data, corrupt file.

    The message is one line that says what went wrong and what to do about it.
    The CLI prints it as ``error: <message>`` and exits with code 2.
    """
