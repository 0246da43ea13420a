"""Terminal escape sequences out of a step's output: every line the engine prints or
parses passes through `strip_ansi`, so it lives apart from the error parsers (whose
patterns a build that fails nothing never compiles)."""

from __future__ import annotations

import re

# CSI sequences (colours, cursor moves), OSC sequences (cargo's hyperlinks, window
# titles), charset selections like ESC ( B (tput sgr0), the remaining two-byte escapes
# and finally a stray ESC, in that order of precedence.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[ -/]+[0-~]"
    r"|\x1b[@-Z\\-_]"
    r"|\x1b"
)
_SGR = re.compile(r"\x1b\[[0-9;:]*m")  # colours and text attributes only


def strip_ansi(text: str, *, keep_colours: bool = False) -> str:
    """`text` without terminal escape sequences: no ESC byte survives, even a stray one.

    With `keep_colours`, colour sequences stay (each line that has one ends with a reset)
    while everything that moves the cursor or erases goes. A carriage return inside a line
    (progress bars redrawn in place) keeps only what a terminal would finally show: the
    text after the last one.
    """
    if "\x1b" in text:
        if keep_colours:
            text = _ANSI.sub(lambda m: m[0] if _SGR.fullmatch(m[0]) else "", text)
            text = "\n".join(
                f"{line}\x1b[0m" if "\x1b[" in line else line for line in text.split("\n")
            )
        else:
            text = _ANSI.sub("", text)
    if "\r" in text:
        text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    return text
