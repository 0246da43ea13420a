"""Types of the optional C module built from _speedups.c."""

ABI: int

def check_stats(
    root: str,
    rel_paths: list[str],
    entries: dict[str, tuple[int, int, int, int, str]],
    trusted_before: int,
    result: dict[str, str],
    threads: int,
) -> list[tuple[str, tuple[int, int, int, int], bool]]: ...
def walk_files(root: str, start: str, skip: tuple[str, ...]) -> tuple[list[str], int] | None: ...
