"""The CLI builds its parser from light modules: torch, pandas and the like load only when a command runs."""

import json
import subprocess
import sys

HEAVY = ["torch", "pandas", "numpy", "numba", "pyarrow", "optuna", "matplotlib", "fastapi", "uvicorn", "scipy"]


def loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nimport json; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_building_the_parser_imports_no_heavy_module():
    code = "import latentrec.cli\nparser = latentrec.cli.build_parser()\nparser.format_help()"
    assert loaded_after(code) == []


def test_every_command_help_stays_light():
    code = ("import contextlib, io, latentrec.cli\nfor name in latentrec.cli.COMMANDS:\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        latentrec.cli.main([name, '--help'])")
    assert loaded_after(code) == []


def test_the_public_api_still_loads_on_use():
    assert "torch" in loaded_after("import latentrec\nlatentrec.fit")
    assert loaded_after("import latentrec\nlatentrec.TrainConfig") == []
    import latentrec
    assert sorted(latentrec.__all__) == sorted(latentrec._PUBLIC)  # the written list names every lazy export


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """``latentrec ... | head``: the closed pipe ends the command with status 1 and no traceback."""
    code = ("import sys, latentrec.cli as cli\n"
            "cli.main = lambda: print('line\\n' * 1_000_000) or 0\n"
            "sys.exit(cli.entry())")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(10) == b"line\nline\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 1
    assert proc.stderr.read() == b""


def test_loading_a_model_dir_leaves_torch_s_compiler_unloaded(tmp_path):
    """Building a model on the meta device to load it draws no random weights: ``normal_`` there imports
    ``torch._dynamo``, a second of every ``recommend``/``predict``/``serve`` start-up."""
    from tiny_rec import tiny_rec
    tiny_rec([[1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]).save(tmp_path / "m")
    code = (f"import sys\nfrom latentrec import Recommender\nRecommender.load({str(tmp_path / 'm')!r})\n"
            "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo'))[:1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"
