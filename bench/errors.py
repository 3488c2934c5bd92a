"""Exception classes. ``BenchError`` means "user error": the CLI prints one line and exits 1."""

from __future__ import annotations


class BenchError(Exception):
    """A problem the user can fix (bad suite, missing file, unwritable directory...).

    The CLI prints ``str(err)`` as one line with no traceback. Bugs are other exceptions and
    keep their traceback.
    """


class SuiteError(BenchError):
    """A suite file is malformed or describes an impossible convolution."""


class SchemaError(BenchError):
    """A stored file has a schema version this convbench does not read."""


class BackendUnavailable(BenchError):
    """A backend cannot run here (package missing, no GPU, unsupported GPU...)."""


class UnsupportedCase(Exception):
    """This backend cannot run this case (e.g. bf16 on a device without bf16). Not a bug."""


class BuildFailed(Exception):
    """The backend failed to build an engine for a case; message holds the backend's log."""
