"""The README's code blocks run as written, without a single warning."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_opens_with_the_two_set_up_commands():
    first = re.search(r"```\n(.*?)```", README.read_text(), re.S).group(1).splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["make tour", "make test"]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_block_runs_without_warnings(index):
    # A fresh interpreter per block, as a reader pastes it; any warning is an error.
    code = "import warnings\nwarnings.simplefilter('error')\n" + BLOCKS[index]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=README.parent,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
