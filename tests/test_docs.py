"""docs/tutorial.md runs as written: every snippet is executed and its shown output compared.

How the file is read:

* ```` ```python ```` blocks are REPL sessions: ``>>>`` lines (with ``...`` continuations)
  run in one namespace shared by the whole file, and the lines after them are the
  output they must print;
* ```` ```console ```` blocks hold ``$ gpunn ...`` commands, each followed by what it
  prints (stdout and stderr, as a terminal shows them); they run through click's
  CliRunner on the NumPy backend;
* all of them run in order, in one fresh working folder, so a later snippet can use a
  model file an earlier one wrote.

How output is compared (:func:`matches`), line by line: the spaces at either end of a
line and the width of a run of spaces are free (doctest's ``<BLANKLINE>`` is a blank
line); ``...`` stands for any text within a line (timings and speeds are shown that way),
and a line of ``...`` for any lines.  A number is compared as doctest would, as text,
with one allowance: a number with a decimal point or an exponent must be printed with
the digits shown (as many decimals, the same exponent form: ``0.59327`` does not stand
for a printed ``0.59326999``), and may differ from the shown one by one unit of its last
digit, so that another BLAS summing in another order cannot break the document; whole
numbers must be equal.  NumPy's print options are fixed at their defaults while the
snippets run, so arrays print as a reader's fresh interpreter prints them.  Everything
shown is otherwise deterministic: fixed seeds, and the digits data set that ships with gpunn.

The MNIST block (```` ```console mnist ````) cannot be compared, since the test cannot
download MNIST and its numbers come from the real data set: its commands run on a small
MNIST-format folder made here from the embedded digits (scaled up to 28x28), every
number in its output may differ, and so may the rows of the input's picture; the words
and the shape of the output must be as shown.
"""

import contextlib
import io
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gpunn
from gpunn.cli.main import cli

from test_data import write_mnist_folder

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
#: With any numbers allowed, the digits in names (x407, h26) may differ too.
DIGITS = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
PICTURE_ROW = re.compile(r"^ *[.:\-=+*#%@][ .:\-=+*#%@]*$")
PICTURE = r"(?:[ .:\-=+*#%@]*\n)*"
ELLIPSIS = re.compile(r"(?<!\.)\.\.\.(?!\.)")
#: NumPy's own defaults (numpy.set_printoptions), fixed here whatever another test or a plugin set before.
NUMPY_DEFAULT_PRINTING = dict(precision=8, threshold=1000, edgeitems=3, linewidth=75, suppress=False,
                              nanstr="nan", infstr="inf", sign="-", floatmode="maxprec", legacy=False)


# -- reading the document ------------------------------------------------------------------------
def snippets(text: str):
    """(language, options, [(source, expected output), ...]) for every fenced block, in order."""
    for block in FENCE.finditer(text):
        language, options, body = block.group(1), block.group(2).split(), block.group(3)
        if language == "python":
            examples = python_examples(body)
        elif language == "console":
            examples = console_examples(body)
        else:
            continue
        yield language, options, examples


def python_examples(body: str):
    import doctest

    return [(example.source, example.want) for example in doctest.DocTestParser().get_examples(body)]


def console_examples(body: str):
    examples = []
    for line in body.splitlines():
        if line.startswith("$ "):
            examples.append([line[2:], ""])
        elif examples:
            examples[-1][1] += line + "\n"
    return [tuple(example) for example in examples]


# -- comparing output ----------------------------------------------------------------------------
def matches(want: str, got: str, any_numbers: bool = False) -> bool:
    """Whether ``got`` is the output ``want`` shows (see the module docstring for the rules).

    Line by line, so that the pattern stays unambiguous (and fast) on long outputs: a line
    ``...`` stands for any lines, a ``...`` within a line for any text in that line.
    """
    pattern, shown = [], []
    for line in (line.strip() for line in want.replace("<BLANKLINE>", "").strip().splitlines()):
        if line == "...":
            pattern.append(r"(?:[^\n]*\n)*?")
        elif any_numbers and (PICTURE_ROW.match(line) or not line):
            if pattern[-1:] != [PICTURE]:  # a picture (blank rows too) matches any picture
                pattern.append(PICTURE)
        else:
            pattern.append(_line_pattern(line, shown, any_numbers) + r"\n")
    lines = "".join(line.strip() + "\n" for line in got.strip().splitlines())
    found = re.fullmatch("".join(pattern), lines)
    if found is None:
        return False
    return any_numbers or all(_close(text, value) for text, value in zip(shown, found.groups()))


def _line_pattern(line: str, shown: list, any_numbers: bool) -> str:
    parts, position = [], 0
    for number in (DIGITS if any_numbers else NUMBER).finditer(line):
        parts.append(_text_pattern(line[position:number.start()]))
        if any_numbers:
            parts.append(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
        else:
            parts.append(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)")
            shown.append(number.group())
        position = number.end()
    parts.append(_text_pattern(line[position:]))
    return "".join(parts)


def _text_pattern(text: str) -> str:
    """Text of one line: runs of spaces match runs of spaces, ``...`` any text in the line (a longer
    run of dots, as in a picture, is text)."""
    pieces = []
    for piece in ELLIPSIS.split(text):
        words = r"[ \t]+".join(re.escape(word) for word in piece.split())
        pieces.append((r"[ \t]*" if piece[:1].isspace() else "") + words
                      + (r"[ \t]*" if piece[-1:].isspace() and words else ""))
    return r"[^\n]*?".join(pieces)


def _close(shown: str, got: str) -> bool:
    if not re.search(r"[.e]", shown):
        return shown == got
    mantissa, _, exponent = shown.partition("e")
    got_mantissa, _, got_exponent = got.partition("e")
    decimals = len(mantissa.partition(".")[2])
    if decimals != len(got_mantissa.partition(".")[2]) or bool(exponent) != bool(got_exponent):
        return False  # printed with other digits than the document shows
    unit = 10.0 ** (int(exponent or 0) - decimals)
    return abs(float(shown) - float(got)) <= unit * (1 + 1e-9)


def test_the_comparison_rules():
    assert matches("v = 0.3775", "v = 0.3775") and not matches("v = 0.3775", "v = 0.37750000001")
    assert matches("y = 0.5933", "y = 0.5932") and matches("y = 0.5933", "y = 0.5934")  # another BLAS
    assert not matches("y = 0.5933", "y = 0.5936")
    assert not matches("y = 0.5933", "y = 0.59327")  # shown as printed, digit for digit
    assert not matches("array([[0.59327]])", "array([[0.59326999]])")
    assert not matches("fd 1.2e-08", "fd 0.000000012")
    assert not matches("network says 1", "network says 2")  # whole numbers exactly
    assert matches("fd 1.2e-08", "fd 1.3e-08") and not matches("fd 1.2e-08", "fd 1.2e-06")
    assert not matches("1.10 s  ... samples/s", "0.87 s  3,123 samples/s")  # 1.10 and 0.87 are too far apart
    assert matches("... s  ... samples/s\nnext", "0.87 s  3,123 samples/s\nnext")
    assert matches("a\n...\nz", "a\nb\nc\nz") and not matches("a\nz", "a\nb\nz")
    assert matches("h1    v =  1", "h1 v = 1") and not matches("h1 v = 1", "h1 v = 1 extra")
    assert matches("x407 0.99 right", "x12 0.5 right", any_numbers=True)
    assert not matches("says 4: right", "says 4: wrong", any_numbers=True)
    assert matches("pic:\n\n  ..@@##  \n  ::  \nend", "pic:\n  %%    \n  ==**\n\n\nend", any_numbers=True)
    assert matches("a\n...\nz", "a\nb\nc\nz", any_numbers=True)  # an ellipsis is no picture row
    assert not matches(".........@", "..x..x..x..x..@")  # a run of dots is no ellipsis
    long_output = "\n".join(f"line {i} 0.5" for i in range(500))
    assert not matches("line 0 0.5\n...\nline 250 0.5", long_output)  # fails fast, no backtracking blow-up


# -- running it --------------------------------------------------------------------------------------
def digits_as_mnist(folder: Path) -> None:
    """An MNIST-format folder from the embedded digits, each 8x8 image scaled up to 28x28."""
    data = gpunn.load_dataset("digits")

    def images(X):
        big = np.kron(X.reshape(-1, 8, 8), np.ones((3, 3)))  # 24x24
        return np.round(np.pad(big, ((0, 0), (2, 2), (2, 2))) * 255).astype(np.uint8)

    folder.mkdir()
    write_mnist_folder(folder, [images(data.X_train), data.y_train.astype(np.uint8),
                                images(data.X_test), data.y_test.astype(np.uint8)])


def run_command(command: str) -> str:
    words = shlex.split(command)
    assert words[0] == "gpunn", f"the tutorial's console snippets run gpunn only, not {words[0]!r}"
    result = CliRunner().invoke(cli, words[1:])
    assert result.exit_code == 0, f"$ {command}\n{result.output}"
    return result.output


def run_python(source: str, namespace: dict) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, str(TUTORIAL), "single"), namespace)
    return out.getvalue()


@pytest.mark.skipif(not TUTORIAL.is_file(), reason="docs/tutorial.md is not part of this checkout")
def test_every_snippet_of_the_tutorial_runs_as_shown(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")  # the landscape picture; CI installs it (the test extra)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPUNN_BACKEND", "numpy")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    digits_as_mnist(tmp_path / "mnist")
    namespace, counts = {"__name__": "tutorial"}, {"python": 0, "console": 0}
    with np.printoptions(**NUMPY_DEFAULT_PRINTING):
        for language, options, examples in snippets(TUTORIAL.read_text(encoding="utf-8")):
            for source, want in examples:
                got = run_python(source, namespace) if language == "python" else run_command(source)
                assert matches(want, got, any_numbers="mnist" in options), \
                    f"docs/tutorial.md, {language} snippet:\n{source}\nshows:\n{want}\nbut prints:\n{got}"
                counts[language] += 1
    assert counts["python"] >= 10 and counts["console"] >= 5, counts  # the file was read, not skipped
