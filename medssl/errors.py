"""Typed errors. Each names the problem and the file (a relative path or a short hash),
never the patient. Each class carries a stable ``code`` that batch runs and manifests
record, and the exit status the CLI uses for it."""

from __future__ import annotations


class MedsslError(Exception):
    """Base of every error medssl raises on purpose."""

    code = "error"
    exit_status = 1

    def __init__(self, message: str, *, source: str | None = None, code: str | None = None):
        self.source = source
        if code is not None:
            self.code = code
        super().__init__(f"{source}: {message}" if source else message)
        self.reason = message


class InputError(MedsslError):
    """A scan or input file that cannot be used as it is (bad, broken, unsupported)."""

    code = "bad_input"
    exit_status = 3


class NotAScanError(InputError):
    code = "not_a_scan"


class CorruptFileError(InputError):
    code = "corrupt"


class UnsupportedInputError(InputError):
    code = "unsupported"


class GeometryError(InputError):
    """Missing slices, uneven spacing, gantry tilt, mixed orientations, qform/sform clash."""

    code = "geometry"


class DecoderMissingError(InputError):
    code = "decoder_missing"


class LimitExceededError(InputError):
    """Sizes, counts or ratios beyond the configured safety limits."""

    code = "limit_exceeded"


class ConfigError(MedsslError):
    code = "config"
    exit_status = 4


class CheckpointError(MedsslError):
    code = "checkpoint"
    exit_status = 5


# Exit statuses of the `medssl` command (documented in README.md).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = InputError.exit_status
EXIT_CONFIG = ConfigError.exit_status
EXIT_CHECKPOINT = CheckpointError.exit_status
EXIT_PARTIAL = 6  # a batch command finished, some inputs failed
EXIT_ALL_FAILED = 7  # a batch command finished, every input failed
