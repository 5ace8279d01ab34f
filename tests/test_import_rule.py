"""``detector`` never imports ``training`` (the service must run without training code)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

DETECTOR = Path(__file__).resolve().parents[1] / "detector"


def test_no_source_file_in_detector_imports_training():
    offenders = []
    for path in DETECTOR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__"):
                names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            offenders += [f"{path.name}: {n}" for n in names if n == "training" or n.startswith("training.")]
    assert offenders == []


def test_importing_every_detector_module_loads_no_training_module():
    modules = sorted(
        ".".join(p.relative_to(DETECTOR.parent).with_suffix("").parts)
        for p in DETECTOR.rglob("*.py") if p.name != "__main__.py"
    )
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
            "print(sorted(m for m in sys.modules if m == 'training' or m.startswith('training.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
