"""The package keeps the shape issue 19 gave it: small modules and classes a newcomer can read
in one sitting. A module or class that grows past these bounds is a sign it holds two jobs."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "imagepuller"
MODULE_MAX_LINES = 400
CLASS_MAX_LINES = 250


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_no_module_over_400_lines_and_no_class_over_250(module):
    source = module.read_text()
    assert len(source.splitlines()) <= MODULE_MAX_LINES
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= CLASS_MAX_LINES, f"class {node.name} is {length} lines"
