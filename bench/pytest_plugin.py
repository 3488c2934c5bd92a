"""pytest plugin: convbench suites as tests, convbench's timing in pytest-benchmark's storage.

``pytest suites/quickstart.toml`` (or ``--convbench-suite PATH``) collects one test per
case × backend, e.g. ``quickstart.toml::conv[torch-3x3-relu]``, marked ``convbench``, with the
backend's name, and ``gpu`` when the backend runs on CUDA. Each test runs the case through
convbench's runner (build, check against the float64 reference, measure, profile), appends the
record to ``results/<suite>/<run-id>/`` like ``convbench run``, and hands convbench's samples
(CUDA-event times on a GPU, host times on a CPU) to pytest-benchmark, so ``--benchmark-json``,
``--benchmark-autosave``, ``pytest-benchmark compare`` and ``--benchmark-compare-fail`` work on
GPU-timed numbers. A failed check or build fails the test; an unsupported case is skipped with
its reason. Hand-written tests use the ``conv_benchmark`` fixture.

The plugin loads in every pytest run once convbench is installed, so it does nothing unless a
suite file is collected or ``conv_benchmark`` is used: this module imports nothing heavy (only
``pytest_addoption`` reads ``bench.suite.TimingConfig``, which brings pydantic and numpy, to
generate the ``--convbench-<timing>`` options), and a ``.toml`` file is collected only when named
on the command line (never found by directory recursion, so ``pyproject.toml`` is left alone).

PYTEST_DONT_REWRITE: no asserts here; the module may be imported before pytest loads it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bench.commands import common_args

if TYPE_CHECKING:
    from bench.backends.base import Backend
    from bench.plan import RunPlan
    from bench.pytest_support import PytestRun
    from bench.record import Record
    from bench.spec import ConvSpec
    from bench.suite import Case

_RUN = pytest.StashKey["PytestRun"]()
_SESSION = pytest.StashKey[pytest.Session]()  # its exit status, for a stuck session's os._exit


# --- options -------------------------------------------------------------------------------------
_PREFIX = "convbench-"  # --convbench-backend, --convbench-min-time-s ...
_DEST = _PREFIX.replace("-", "_")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("convbench", "convbench (suite files as benchmarks)")
    g.addoption("--convbench-suite", action="append", default=[], metavar="PATH",
                help="collect this suite file too (same as naming it as an argument)")
    # the option groups of `convbench run`, defined once in bench.commands.common_args
    common_args.add_target_options(g.addoption, prefix=_PREFIX)
    common_args.add_timing_options(g.addoption, prefix=_PREFIX)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "convbench: a convbench case (a suite file's case × "
                                       "backend, or a test using conv_benchmark)")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU")
    _timing_overrides(config)  # a bad --convbench-min-samples etc. stops pytest before it starts
    base = config.invocation_params.dir
    known = {(base / a.split("::")[0]).resolve() for a in config.args}
    for s in config.getoption("convbench_suite") or []:
        path = (base / s).resolve()
        if path not in known:  # collected in addition to the other arguments or testpaths
            config.args.append(str(path))
            known.add(path)


def _timing_overrides(config: pytest.Config) -> dict[str, Any]:
    """The ``--convbench-<timing>`` options given, each value checked (against each suite's
    ``[timing]`` again when the suite is collected); a bad one is a usage error naming it."""
    from bench.errors import BenchError

    given = {k.removeprefix(_DEST): v for k, v in vars(config.option).items()
             if k.startswith(_DEST)}
    try:
        return common_args.timing_overrides(given, prefix=_PREFIX)
    except BenchError as e:
        raise pytest.UsageError(str(e)) from None


def _run(config: pytest.Config) -> PytestRun:
    """convbench's state for this session, created on the first suite item or fixture use."""
    run = config.stash.get(_RUN, None)
    if run is None:
        from bench.pytest_support import PytestRun, command_line

        opt = config.getoption
        overrides = _timing_overrides(config)
        base = config.invocation_params.dir
        cache = opt("convbench_cache_dir")
        run = PytestRun(out=base / opt("convbench_out"),
                        cache_dir=base / cache if cache else None,
                        timing_overrides=overrides,
                        device_index=opt("convbench_device"),
                        command=command_line(config.invocation_params.args))
        config.stash[_RUN] = run
    return run


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is not None:
        session.config.stash[_SESSION] = session
        run.close()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """After a case whose GPU work never finished, the session leaves as ``convbench run``
    does, with ``os._exit`` once pytest has reported: the GPU may still run the stuck work, and
    exit handlers would wait for it or crash (torch's profiler, left running after a stuck wait,
    dies in its teardown: SIGSEGV on the H200). This also ends a program that called
    ``pytest.main()`` in the same process. Under pytest-xdist it is the worker process that
    leaves; its summary line is not shown by the controller."""
    run = config.stash.get(_RUN, None)
    if run is None or not run.stuck:
        return
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    # read now: hook wrappers that ran after our sessionfinish may have changed it
    session = config.stash.get(_SESSION, None)
    os._exit(int(session.exitstatus) if session is not None else 1)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]
                                         ) -> None:
    """pytest-benchmark's hook: the GPUs the session's convbench runs used (name, UUID,
    compute capability, driver) as ``machine_info["gpu"]``; None on a CPU-only session."""
    from bench.pytest_support import machine_gpu

    run = config.stash.get(_RUN, None)
    machine_info["gpu"] = machine_gpu(run.run_dirs() if run is not None else [])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    if run is None or not run.run_dirs():
        return
    terminalreporter.write_sep("-", "convbench")
    for d in run.run_dirs():
        terminalreporter.write_line(f"results: {d}  (report: convbench report {d})")
    if run.stuck:
        terminalreporter.write_line(f"stuck: {run.stuck}; the session leaves without running "
                                    "exit handlers")


# --- collection ----------------------------------------------------------------------------------
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".toml" and parent.session.isinitpath(file_path):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


def _case_ids(cases: tuple[Case, ...]) -> dict[int, str]:
    """Readable, unique ids: the case's label or short name; a label shared by several cases
    (a labelled layer swept over precisions) gets the short name, a tie after that the key."""
    ids = {c.index: c.name for c in cases}
    counts = Counter(ids.values())
    for c in cases:
        if counts[ids[c.index]] > 1 and c.label:
            ids[c.index] = f"{c.label}-{c.spec.short_name()}"
    counts = Counter(ids.values())
    for c in cases:
        if counts[ids[c.index]] > 1:
            ids[c.index] = f"{ids[c.index]}-{c.key[:8]}"
    return ids


class SuiteFile(pytest.File):
    """A convbench suite: one ``ConvItem`` per case × backend."""

    def collect(self) -> Iterator[pytest.Item]:
        from bench.errors import BenchError
        from bench.suite import load_suite

        run = _run(self.config)
        try:
            suite = load_suite(self.path)
            plan = run.plan(suite, self.config.getoption("convbench_backends"))
            backends = [run.backend_state(n) for n in plan.backend_names]
        except BenchError as e:
            raise self.CollectError(" ".join(str(e).split())) from None
        ids = _case_ids(suite.cases)
        for case in suite.cases:
            for backend, reason in backends:
                param = f"{backend.name}-{ids[case.index]}"
                item = ConvItem.from_parent(self, name=f"conv[{param}]", param=param, case=case,
                                            backend=backend, plan=plan)
                _mark(item, backend, reason)
                yield item


def _mark(item: pytest.Item, backend: Backend, unavailable: str) -> None:
    # backend names become markers when first used, so `pytest --strict-markers` accepts them
    # without this plugin importing the backend registry in every pytest run
    item.config.addinivalue_line("markers", f"{backend.name}: a convbench case of this backend")
    item.add_marker("convbench")
    item.add_marker(backend.name)
    if unavailable:
        item.add_marker(pytest.mark.skip(reason=f"backend {backend.name}: {unavailable}"))
    elif backend.device == "cuda":
        item.add_marker("gpu")


class ConvItem(pytest.Item):
    """One case of a suite on one backend."""

    def __init__(self, *, param: str, case: Case, backend: Backend, plan: RunPlan,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.param = param
        self.case = case
        self.backend = backend
        self.plan = plan
        self.suite = plan.suite
        self.timing = plan.timing
        self.record: Record | None = None
        # pytest-benchmark treats items using its fixture as benchmarks (--benchmark-only,
        # --benchmark-skip); these are benchmarks through the same storage
        self.fixturenames = ("benchmark",)
        # -k also matches the spec's short name, key and precision of labelled cases
        spec = case.spec
        self.extra_keyword_matches.update({spec.short_name(), case.key, spec.precision})

    def runtest(self) -> None:
        rec = _run(self.config).measure(self.case, self.backend, self.plan)
        self.record = rec
        _check(rec)
        bs = getattr(self.config, "_benchmarksession", None)
        if bs is not None and not bs.disabled:
            from bench.pytest_support import BenchSource, benchmark_entry

            source = BenchSource(name=self.name, fullname=self.nodeid, group=self.suite.name,
                                 param=self.param, params={"backend": self.backend.name,
                                                           "case": self.case.name})
            bs.benchmarks.append(benchmark_entry(rec, source, self.suite.name, self.timing))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.suite.name}: {self.backend.name} {self.case.name}"


def _check(rec: Record) -> None:
    """Turn a record's status into the test's outcome."""
    if rec.status == "ok":
        return
    if rec.status == "unsupported":
        pytest.skip(f"unsupported: {rec.error}")
    msg = f"{rec.status}: {rec.error}"
    if rec.traceback:
        msg += "\n" + rec.traceback
    pytest.fail(msg, pytrace=False)


# --- fixture -------------------------------------------------------------------------------------
@pytest.fixture
def conv_benchmark(request: pytest.FixtureRequest, benchmark: Any) -> Callable[..., Record]:
    """Measure one convolution with convbench and record it into pytest-benchmark.

    ``conv_benchmark(spec, "torch", **timing)`` takes a ``ConvSpec`` (or its fields as a dict),
    a backend name and optional ``[timing]`` keys (``min_time_s=0.1`` ...; the command line's
    ``--convbench-*`` options override them), and returns the record ``convbench run`` stores:
    ``stats`` in ms, ``check``, ``timing``, ``derived`` ... Like pytest-benchmark's
    ``benchmark``, it can be called once per test. A failed check or build fails the test; an
    unsupported case is skipped.
    """
    used = False

    def measure(spec: ConvSpec | dict[str, Any], backend: str = "torch",
                **timing: Any) -> Record:
        nonlocal used
        if used:
            benchmark.has_error = True  # as pytest-benchmark does: a reused fixture is not saved
            raise RuntimeError("conv_benchmark can be called once per test "
                               "(parametrize the test to measure several cases)")
        used = True
        # pytest-benchmark warns about an unused fixture unless its mode is set; that warning
        # is wrong here: the fixture's measurement is this one
        benchmark._mode = "conv_benchmark(...)"
        from bench.errors import BenchError
        from bench.plan import validate_timing
        from bench.pytest_support import benchmark_entry, fixture_suite
        from bench.spec import ConvSpec
        from bench.suite import Case, TimingConfig

        run = _run(request.config)
        the_spec = spec if isinstance(spec, ConvSpec) else ConvSpec.model_validate(spec)
        case = Case(index=0, spec=the_spec, label=request.node.name)
        try:
            base = validate_timing(TimingConfig(), timing, prefix="conv_benchmark timing key ")
            plan = run.plan(fixture_suite(case, backend, base), base_timing=base)
            b, reason = run.backend_state(backend)
        except BenchError as e:
            raise pytest.UsageError(str(e)) from None
        if reason:
            pytest.skip(f"backend {backend}: {reason}")
        cfg = plan.timing
        rec = run.measure(case, b, plan)
        _check(rec)
        if not benchmark.disabled:
            from bench.pytest_support import FIXTURE_SUITE

            # the real fixture as the source: name, params, group and has_error follow the test
            benchmark.stats = benchmark_entry(rec, benchmark, FIXTURE_SUITE, cfg)
            request.config._benchmarksession.benchmarks.append(benchmark.stats)
        return rec

    return measure
