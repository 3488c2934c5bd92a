"""``import bench`` and the report/stats modules work with no GPU library installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in {'torch', 'tensorrt', 'tensorrt_rtx', 'cuda', 'pynvml',
                                      'nvtx', 'triton', 'ray', 'cudnn'}:
                raise ImportError(f'blocked {name}')
    sys.meta_path.insert(0, Block())
""")


def test_core_modules_import_without_gpu_libraries(cli_env: dict[str, str]) -> None:
    code = BLOCK + textwrap.dedent("""
        import bench, bench.report, bench.stats, bench.suite, bench.store, bench.runner
        import bench.cli, bench.spec, bench.filter, bench.reference, bench.report.tables
        import bench.backends.registry, bench.backends.base
        heavy = [m for m in sys.modules
                 if m.split('.')[0] in {'torch', 'tensorrt', 'cuda', 'cudnn'}]
        assert not heavy, heavy
        print('ok')
    """)
    out = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_doctor_explains_missing_backends(cli_env: dict[str, str]) -> None:
    code = BLOCK + "from bench.cli import main; raise SystemExit(main(['doctor']))"
    out = subprocess.run([sys.executable, "-c", code], env={**cli_env, "COLUMNS": "200"},
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "torch" in out.stdout and "not installed" in out.stdout
    assert "pip install 'trt-convbench[torch]'" in out.stdout
    assert "cudnn" in out.stdout and "pip install 'trt-convbench[cudnn]'" in out.stdout


def test_model_modules_import_without_onnx_and_say_how_to_install(cli_env: dict[str, str],
                                                                  tmp_path: object) -> None:
    code = BLOCK.replace("'cudnn'}", "'cudnn', 'onnx'}") + textwrap.dedent("""
        import bench.onnx_suite, bench.commands.suite, bench.suite_overrides, bench.rundirs
        import bench.suite_text, bench.report.model
        heavy = [m for m in sys.modules if m.split('.')[0] in {'torch', 'onnx'}]
        assert not heavy, heavy
        from bench.cli import main
        raise SystemExit(main(['suite', 'from-onnx', 'model.onnx']))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True,
                         text=True, check=False, cwd=str(tmp_path))
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip() == ("convbench: error: reading ONNX models needs the onnx "
                                  "package: pip install 'trt-convbench[onnx]'")
