"""Adjacent string literals split across lines keep a space at the seam.

Python joins ``"held out; models"`` and ``"train on the rest"`` on the next line into one string,
and a missing space at the seam glues two words ("modelstrain") in a message or a summary. The
check tokenizes every module of the package and reports each seam where a word (or a word and
its punctuation) meets the next word with no whitespace between.
"""

from __future__ import annotations

import io
import itertools
import re
import tokenize
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mlpkit"
_PREFIX = re.compile(r"^[rRbBfFuU]*")
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)         # Python 3.12+ splits f-strings
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)


def _literals(source: str) -> list[tuple[int, int, str]]:
    """(first line, last line, source text) of each token, f-strings whole; "\\0" for a non-string."""
    lines = source.splitlines(keepends=True)
    literals: list[tuple[int, int, str]] = []
    start = None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.NL, tokenize.COMMENT):                # these keep literals adjacent
            continue
        if token.type == _FSTRING_START:
            start = token.start
        elif token.type == _FSTRING_END and start is not None:
            text = "".join(lines[start[0] - 1 : token.end[0]])
            text = text[start[1] : len(text) - len(lines[token.end[0] - 1]) + token.end[1]]
            literals.append((start[0], token.end[0], text))
            start = None
        elif start is None:                                            # any other token ends a run
            text = token.string if token.type == tokenize.STRING else "\0"
            literals.append((token.start[0], token.end[0], text))
    return literals


def _body(literal: str) -> str:
    text = _PREFIX.sub("", literal)
    quote = text[:3] if text[:3] in ('"""', "'''") else text[0]
    return text[len(quote) : -len(quote)]


def glued_seams(source: str) -> list[tuple[int, str]]:
    """(line, excerpt) of each implicit concatenation across lines that glues two words."""
    found = []
    for (_, end_a, a), (start_b, _, b) in itertools.pairwise(_literals(source)):
        if "\0" in (a, b) or start_b <= end_a or a.endswith(('"""', "'''")) or b.endswith(('"""', "'''")):
            continue
        left, right = _body(a), _body(b)
        if left.endswith("\\n") or not left or not right:
            continue
        if re.search(r"[\w,.;:!?)]$", left) and re.match(r"\w", right):
            found.append((end_a, f"{left[-20:]!r} + {right[:20]!r}"))
    return found


def test_the_check_finds_a_glued_seam_and_accepts_a_spaced_one():
    glued = 'x = (\n    "held out;\\n"\n    "models"\n    "train on the rest"\n)\n'
    assert glued_seams(glued) == [(3, "'models' + 'train on the rest'")]
    spaced = 'x = (\n    "models "\n    f"train on {rest}"  # comment\n    "."\n)\ny = "a" "b"\n'
    assert glued_seams(spaced) == []


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_glued_words_at_string_seams(path):
    assert glued_seams(path.read_text(encoding="utf-8")) == [], f"{path}: add the missing space at the seam"
