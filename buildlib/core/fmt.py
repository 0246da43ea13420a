"""How sizes, durations and lists of names read everywhere: the terminal, the reports,
clean and prune, error messages.

One style for each, so a figure reads the same in the live view, the summary, the
HTML report and `nox -s metrics`.
"""

from __future__ import annotations

from collections.abc import Collection

NAMES_SHOWN = 20  # an error's list of choices; a monorepo's 1,000 steps are not a fix


def human_size(size: float) -> str:
    """`512 B`, `1.5 KiB`, `20.0 MiB`, `3.2 GiB`."""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def format_duration(seconds: float) -> str:
    """`0.4s`, `12.3s`, `2m05s`, `1h02m`: short, and wide enough to compare at a glance."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def some_names(names: Collection[str]) -> str:
    """`a, b, c`, or the first NAMES_SHOWN and `... and 480 more (`buildlib plan` lists
    them all)`."""
    shown = list(names)[:NAMES_SHOWN]
    text = ", ".join(shown)
    if len(names) > len(shown):
        text += f", ... and {len(names) - len(shown)} more (`buildlib plan` lists them all)"
    return text
