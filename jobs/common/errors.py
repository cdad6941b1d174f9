"""Errors a step or a command reports to its user, and the exit codes they map to.

Exit codes are the contract with the Job's podFailurePolicy: PERMANENT_EXIT_CODES
fail the Job at once (retrying cannot help), anything else is retried up to the
backoff limit.
"""

EXIT_OK = 0
EXIT_CRASH = 1  # an unexpected exception: retryable, it may be a flake
EXIT_INVALID = 2  # bad spec, bad data, missing input: permanent
EXIT_INTEGRITY = 3  # checksum mismatch on an input: permanent until someone repairs the store
EXIT_GATE = 4  # the promotion gate was not met: permanent
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: store or endpoint unavailable; retry
EXIT_PREEMPTED = 76  # stopped by SIGTERM after saving a checkpoint: retry; the next pod resumes from it

PERMANENT_EXIT_CODES: tuple[int, ...] = (EXIT_INVALID, EXIT_INTEGRITY, EXIT_GATE)


class FtError(Exception):
    """An error with a stable code (shown in status) and a message for people."""

    code = "Error"
    exit_code = EXIT_CRASH

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InvalidInput(FtError):
    code = "InvalidInput"
    exit_code = EXIT_INVALID


class InvalidSpec(InvalidInput):
    code = "InvalidSpec"


class InvalidData(InvalidInput):
    code = "InvalidData"


class MissingInput(InvalidInput):
    code = "MissingInput"


class IntegrityError(FtError):
    code = "ChecksumMismatch"
    exit_code = EXIT_INTEGRITY


class GateNotMet(FtError):
    code = "GateNotMet"
    exit_code = EXIT_GATE


class PreflightError(FtError):
    """A distributed rank could not start training (its code names why, e.g. RendezvousTimeout)."""

    code = "PreflightFailed"
    exit_code = EXIT_CRASH


class Preempted(FtError):
    """SIGTERM: a checkpoint was saved; the next attempt resumes from it."""

    code = "Preempted"
    exit_code = EXIT_PREEMPTED


class TransientError(FtError):
    code = "Unavailable"
    exit_code = EXIT_TRANSIENT


class InvalidKey(InvalidInput):
    code = "InvalidKey"
