"""The package's structure rules, checked on every test run: layering (import-linter), ruff,
public docstrings (interrogate), type annotations, function and module sizes.

These are the acceptance bars of the architecture issue; a change that breaks one fails here,
with the offending place named.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gumbel_rerank"
BIN = Path(sys.executable).parent

MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 700
#: module (relative to the package) -> why it may be longer than MAX_MODULE_LINES
LONG_MODULES: dict[str, str] = {}
MIN_DOCSTRING_COVERAGE = 85.0
MIN_ANNOTATION_COVERAGE = 95.0


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"], cwd=cwd, capture_output=True, text=True, env=env
    )


def test_import_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("data/answers.py", "import gumbel_rerank.cli.args"),  # the library imports the CLI
        ("training/collate.py", "import gumbel_rerank.demo.synthetic"),  # training imports demo
        ("masks.py", "import gumbel_rerank.reader.base"),  # a base module imports a layer above
        ("data/answers.py", "import gumbel_rerank.data.questions"),  # a cycle inside data/
    ],
)
def test_a_deliberate_violation_fails_the_import_check(tmp_path, module, line):
    """The contracts bite: the same check on a copy of the package with one bad import fails."""
    shutil.copytree(PACKAGE, tmp_path / "gumbel_rerank", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "gumbel_rerank" / module
    target.write_text(target.read_text() + f"\n{line}  # deliberate violation\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = _lint_imports(tmp_path, env)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout


def test_ruff_is_clean():
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "gumbel_rerank", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_docstring_coverage():
    """interrogate, configured in pyproject.toml ([tool.interrogate]: public names only)."""
    result = subprocess.run(
        [str(BIN / "interrogate"), "--fail-under", str(MIN_DOCSTRING_COVERAGE), "gumbel_rerank"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def annotation_coverage() -> tuple[float, list[str]]:
    """(percent of annotatable slots annotated, the unannotated ones). A slot is a function's
    return value or a parameter other than ``self``/``cls``; lambdas are not counted."""
    total, missing = 0, []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for fn in _functions(tree):
            args = fn.args
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            params += [a for a in (args.vararg, args.kwarg) if a is not None]
            for arg in params:
                if arg.arg in ("self", "cls"):
                    continue
                total += 1
                if arg.annotation is None:
                    missing.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}({arg.arg})")
            total += 1
            if fn.returns is None and fn.name != "__init__":
                missing.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name} -> ?")
            elif fn.returns is None:
                total -= 1  # __init__ returns None by definition
    return 100.0 * (total - len(missing)) / max(1, total), missing


def test_annotation_coverage():
    coverage, missing = annotation_coverage()
    assert coverage >= MIN_ANNOTATION_COVERAGE, f"{coverage:.1f}%; missing:\n" + "\n".join(missing)


def test_no_function_over_the_limit():
    long = []
    for path in _modules():
        for fn in _functions(ast.parse(path.read_text())):
            length = fn.end_lineno - fn.lineno + 1
            if length > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: {length} lines")
    assert not long, "\n".join(long)


def test_no_module_over_the_limit():
    long = []
    for path in _modules():
        name = str(path.relative_to(PACKAGE))
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES and name not in LONG_MODULES:
            long.append(f"{name}: {lines} lines")
    assert not long, "\n".join(long)


def test_importing_the_cli_loads_no_library_code():
    """`gumbel-rerank --help` and `env` stay fast: the CLI package imports the library only
    when a subcommand runs."""
    code = (
        "import sys, gumbel_rerank.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('gumbel_rerank.', 'torch', 'transformers'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['gumbel_rerank.cli']"
