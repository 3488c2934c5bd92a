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


class CaseStuck(BenchError):
    """A case's GPU work never finished (``bench.gpu.cuda.GpuStuck``). ``record`` is the case's
    record (status ``error``); the caller stores it and stops: the stuck work may still occupy
    the GPU. ``exit_now``: the CLI leaves with ``os._exit`` after its line, so no exit handler
    waits for the stuck GPU."""

    exit_now = True

    def __init__(self, record: object, message: str | None = None) -> None:
        self.record = record
        super().__init__(message or str(getattr(record, "error", "GPU work did not finish")))
