"""Every python block of the README's feature sections runs as is."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SECTIONS = ("## Streams, dependency injection", "## Composition")


def blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    found = []
    for title in SECTIONS:
        start = text.find(title)
        if start < 0:
            continue
        end = text.find("\n## ", start + 1)
        section = text[start : end if end > 0 else None]
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", section, re.S)):
            found.append((f"{title[3:20].strip()}-{i}", code))
    return found


@pytest.mark.parametrize(("name", "code"), blocks(), ids=[n for n, _ in blocks()])
def test_readme_example_runs(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README:{name}", "exec"), {"__name__": f"readme_{name}"})
