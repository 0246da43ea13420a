"""A manifest's text cut before each `[[step]]` and `[[artifact]]` header line, so that
an edit of build.toml validates again only the tables it touched (manifest.py remembers
each validated step under its piece's text; issue 17: 10,000 steps).

The cut is a guess made on lines, and is believed only when each piece, parsed alone,
proves it: the preamble (the text before the first cut) holds no `step` or `artifact`
key, and every other piece holds exactly one table of its kind and nothing else. Then the
document means what the pieces mean, in order:
- A cut line inside a multi-line string or array leaves the piece before it ending inside
  that string or array, which no parser accepts. (That piece starts at a true header or
  at the top of the file, so it is tokenised exactly as the whole text would be, up to
  where it ends.) So when every piece parses, every cut line is a header.
- Between two headers, keys belong to the table the header names, and a piece that holds
  one `[[step]]` table and nothing else names only that table and tables inside it
  (`[step.env]`, `[[step.target...]]`); the whole text reads those as the same table.
  So no piece can add to, or conflict with, another.
Anything else (a header with a comment or spaces, a `[vars]` after a step, a string that
holds a header line) is read as one whole text, as before. tests/test_pieces.py checks
both answers agree on generated texts built to fool the cut.
"""

from __future__ import annotations

import re
from typing import Any

from buildlib.core import toml
from buildlib.core.records import record

KINDS = ("step", "artifact")
_CUT = re.compile(r"^(?=\[\[(step|artifact)\]\]\r?$)", re.MULTILINE)


@record
class Piece:
    kind: str  # "step" or "artifact"
    text: str  # from its header line to the next cut (or the end)


def cut(text: str) -> tuple[str, list[Piece]]:
    """The text before the first `[[step]]`/`[[artifact]]` line, and the pieces after it."""
    parts = _CUT.split(text)
    # re.split with one group: [preamble, kind, text, kind, text, ...]
    preamble = parts[0]
    pieces = [Piece(kind=parts[i], text=parts[i + 1]) for i in range(1, len(parts), 2)]
    return preamble, pieces


def parse_preamble(text: str) -> dict[str, Any] | None:
    """The preamble's tables, or None when it is not TOML alone or holds a step or an
    artifact (the whole text is then read instead)."""
    try:
        document = toml.loads(text)
    except (toml.TOMLDecodeError, RecursionError):  # read whole, which says why
        return None
    return None if any(kind in document for kind in KINDS) else document


def parse_piece(piece: Piece) -> dict[str, Any] | None:
    """The one table `piece` holds, or None when it is not TOML alone or holds anything
    but one table of its kind."""
    try:
        document = toml.loads(piece.text)
    except (toml.TOMLDecodeError, RecursionError):  # read whole, which says why
        return None
    tables = document.get(piece.kind)
    if len(document) != 1 or not isinstance(tables, list) or len(tables) != 1:
        return None
    table: dict[str, Any] = tables[0]
    return table
