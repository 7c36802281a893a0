"""The README's Python snippets run as written, so they cannot drift from the code: each runs in a scratch folder,
and what it prints must be what the README says it prints, the comment after each `print(...)`."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
# `print(...)  # what it prints`: the README shows the reader the output, and this test holds it to it.
PRINTS = re.compile(r"^\s*print\(.*\)\s*#\s*(.+?)\s*$", flags=re.M)


def test_readme_has_python_examples():
    assert len(SNIPPETS) >= 2


def test_expected_output_is_read_from_print_comments():
    assert PRINTS.findall("x = 1\nprint(x == 1, 2)  # True 2\n    print(3)#3 \nprint(4)\n") == ["True 2", "3"]


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs_and_prints_what_it_says(index, tmp_path, monkeypatch, capsys):
    # The snippets use repository-relative paths; run them from a scratch folder that links to those paths so
    # that the files they write land there.
    for name in ("pipelines", "fuse_hf"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    exec(compile(SNIPPETS[index], f"README.md snippet {index}", "exec"), {"__name__": "__readme__"})
    # A print without its expected output in a comment fails here too: every line the README prints is checked.
    assert capsys.readouterr().out.splitlines() == PRINTS.findall(SNIPPETS[index])
