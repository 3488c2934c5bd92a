"""The per-case wall-clock limit (``[timing] case_timeout_s``) and Ctrl-C during a sweep.

**Case limit.** :class:`CaseDeadline` starts when a case starts and covers its steps: build,
check (one inference and the float64 reference), warm-up, timing and profile. It is checked
cooperatively, at points where stopping leaves nothing half-done:

- by the runner before each step: a build or a check that ran past the limit ends the case
  there, recorded with status ``timeout`` and that step;
- by ``bench.timing.measure`` before every warm-up call and every sample (in any thread);
- for the profile, the runner runs only the iterations that fit in the time left (estimated
  from the measured median; at least one, else none) and says so in ``profile_error``: the
  timing is complete by then and is kept, status ``ok``.

What it cannot interrupt: a call that is running — a TensorRT engine build, one CPU
convolution (oneDNN fp16 on a CPU can take a minute per call), the float64 reference
convolution, a CUDA synchronize. The limit acts when that call returns, so a case can overrun
it by one such call. A ``SIGALRM`` that raises into whatever Python code runs was tried and
dropped: it struck inside the first ``import scipy.stats`` and left scipy half-imported for
every later case (``NameError: name '_ndimage_api' is not defined``); an exception raised at an
arbitrary point of a backend or of torch.profiler can leave their state broken the same way.

:class:`CaseTimeout` derives from ``BaseException`` (as ``KeyboardInterrupt`` does) so that a
backend's ``except Exception`` never turns it into that backend's error.

**Ctrl-C.** :class:`InterruptGuard`: Python's SIGINT handler raises ``KeyboardInterrupt`` in
the main thread, but only once the running native call returns — the 25–85 s of issue 14 were
fp16 CPU convolutions. The guard has the C-level signal handler write to a pipe
(``signal.set_wakeup_fd``, which happens at once, whatever the main thread is doing); a thread
reading that pipe gives the main thread ``grace_s`` to stop by itself and otherwise ends the
process: it waits for a record being appended to be written and fsynced (``write_lock``),
prints the same one line as a normal interruption and calls ``os._exit(130)``. Nothing
finished is lost: records are fsynced one by one, and the kernel releases the run's lock. The
thread needs the GIL: torch and TensorRT release it in their long calls.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


class CaseTimeout(BaseException):  # noqa: N818 - named like KeyboardInterrupt, not an error
    """A case ran past ``case_timeout_s``; ``step`` is where it was."""

    def __init__(self, step: str, elapsed_s: float, limit_s: float) -> None:
        super().__init__(step, elapsed_s, limit_s)
        self.step, self.elapsed_s, self.limit_s = step, elapsed_s, limit_s
        self.samples: list[float] = []  # ms per inference of the samples taken (timing step)
        self.placements: list[Any] = []  # the buffer placements timed in full before it

    def __str__(self) -> str:
        return (f"case_timeout_s = {self.limit_s:g} s reached in step {self.step} after "
                f"{self.elapsed_s:.1f} s")


class CaseDeadline:
    """A case's wall-clock limit; ``step`` names what it is doing (set by the runner)."""

    def __init__(self, limit_s: float | None, clock: Callable[[], float] = time.perf_counter
                 ) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self.start = clock()
        self.step = "build"

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self.start

    def expired(self) -> bool:
        return self.limit_s is not None and self.elapsed_s >= self.limit_s

    def check(self) -> None:
        """Raise :class:`CaseTimeout` if the limit has passed."""
        if self.expired():
            assert self.limit_s is not None
            raise CaseTimeout(self.step, self.elapsed_s, self.limit_s)

    def enter(self, step: str) -> None:
        """Start ``step`` (after checking the limit: a step is never begun past it)."""
        self.check()
        self.step = step

    def remaining_s(self) -> float:
        return math.inf if self.limit_s is None else self.limit_s - self.elapsed_s


# --- Ctrl-C ----------------------------------------------------------------------------------
#: held while a result is appended: the guard never ends the process in the middle of one
write_lock = threading.Lock()


class InterruptGuard:
    """See the module docstring. ``line()`` gives the one line printed on a forced exit."""

    def __init__(self, line: Callable[[], str], grace_s: float = 1.0,
                 exit_code: int = 130) -> None:
        self.line = line
        self.grace_s = grace_s
        self.exit_code = exit_code
        self.stopped = threading.Event()  # the main thread handled the interrupt itself
        self._r = self._w = -1
        self._previous_fd: int | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is not threading.main_thread():
            return self  # set_wakeup_fd is for the main thread only
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        try:
            self._previous_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        except ValueError:  # not the main interpreter
            self._close_pipe()
            return self
        self._thread = threading.Thread(target=self._watch, name="convbench-interrupt",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self._thread is None:
            return
        signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
        os.write(self._w, b"\0")  # wakes the thread: it sees ``stopped`` and returns
        self._thread.join(timeout=5)
        self._close_pipe()

    def _close_pipe(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._r = self._w = -1

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self._r, 64)
            except OSError:
                return
            if not data or self.stopped.is_set():
                return
            if signal.SIGINT not in data:
                continue  # SIGALRM of the case limit, or another handled signal
            if self.stopped.wait(self.grace_s):
                return
            self._force_exit()

    def _force_exit(self) -> None:
        # a record half-written would be dropped as a torn line by --resume; waiting for it is
        # cleaner (an fsync takes milliseconds)
        write_lock.acquire(timeout=10)
        try:
            text = self.line()
        except Exception as e:  # noqa: BLE001 - the exit must happen regardless
            text = f"convbench: interrupted ({type(e).__name__})"
        err = sys.stderr
        prefix = "\r\x1b[2K\x1b[?25h" if err is not None and err.isatty() else ""  # rich's bar
        with contextlib.suppress(Exception):
            os.write(2, (prefix + text + "\n").encode(errors="replace"))
        os._exit(self.exit_code)
