"""Every ```python block of the README runs as the script it claims to be (no top-level await:
compiled as a module, that is a SyntaxError). tests/e2e/test_readme_commands.py also runs them
as `python block.py` and runs every ```bash block."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    found = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        line = text.count("\n", 0, match.start()) + 1
        found.append((f"README.md:{line}", match.group(1)))
    return found


def test_the_readme_has_python_blocks():
    assert len(blocks()) >= 5


@pytest.mark.parametrize(("name", "code"), blocks(), ids=[n for n, _ in blocks()])
def test_readme_python_block_runs_as_a_script(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, name, "exec"), {"__name__": "__main__"})
