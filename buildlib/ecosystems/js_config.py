"""Reading JavaScript tools' config files without running them.

`buildlib init` runs nothing of a repository it has never seen (nothing is installed yet),
so it reads tsconfig.json (JSON with comments and trailing commas, and `extends`) and
vite.config.* (a JavaScript module) as text. A vite config is code: only values written
as literals, or as `resolve(__dirname, '...')` / `new URL('...', import.meta.url)`, count
as statically readable; anything else is reported as unreadable, never guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from buildlib.core.records import record

VITE_CONFIGS = (
    "vite.config.ts",
    "vite.config.js",
    "vite.config.mjs",
    "vite.config.mts",
    "vite.config.cjs",
    "vite.config.cts",
)
_MAX_EXTENDS = 8


# -- JSON with comments (tsconfig.json) ----------------------------------------------------------


def _mask_comments(text: str) -> str:
    """`text` with // and /* */ comments replaced by spaces (strings kept as they are), so
    offsets stay the same."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            i = _string_end(text, i)
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out[i:end] = [ch if ch == "\n" else " " for ch in text[i:end]]
            i = end
        else:
            i += 1
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    """The index just past the string literal opening at `start`."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote or (quote != "`" and text[i] == "\n"):
            return i + 1
        i += 1
    return len(text)


def read_jsonc(text: str) -> Any:
    """Parse JSON that may hold comments and trailing commas (what tsc accepts)."""
    masked = _mask_comments(text)
    cleaned = re.sub(
        r'"(?:\\.|[^"\\])*"|,(\s*[}\]])',
        lambda m: m.group(1) if m.group(1) is not None else m.group(0),
        masked,
    )
    return json.loads(cleaned)


@record
class TsConfig:
    """The compiler options that decide what tsc writes, `extends` followed."""

    options: dict[str, Any]  # compilerOptions, paths made relative to the package
    unresolved: tuple[str, ...] = ()  # `extends` of packages (not installed yet)


def read_tsconfig(package_dir: Path, config: str) -> TsConfig | None:
    """The options of `config` (relative to `package_dir`; a directory means its
    tsconfig.json), with `outDir`, `declarationDir` and `tsBuildInfoFile` rewritten
    relative to `package_dir`. None when the file does not exist or does not parse."""
    path = package_dir / config
    if path.is_dir():
        path = path / "tsconfig.json"
    options: dict[str, Any] = {}
    unresolved: list[str] = []
    chain = list(_extends_chain(path, unresolved))
    if not chain:
        return None
    for file, data in reversed(chain):  # the base first, the file itself last
        compiler = data.get("compilerOptions")
        if not isinstance(compiler, dict):
            continue
        for key, value in compiler.items():
            if key not in ("outDir", "declarationDir", "tsBuildInfoFile", "rootDir"):
                options[key] = value
            elif isinstance(value, str):
                options[key] = _relative_to(file.parent / value, package_dir)
            # A path that is not a string (tsc refuses it): as if not set.
    return TsConfig(options=options, unresolved=tuple(unresolved))


def _extends_chain(path: Path, unresolved: list[str]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """`path`'s parsed JSON, then what it extends (relative paths only: a package's config
    lives in node_modules, which is not there before the install)."""
    seen: set[Path] = set()
    queue = [path]
    while queue and len(seen) < _MAX_EXTENDS:
        current = queue.pop(0).resolve()
        if current in seen:
            continue
        seen.add(current)
        try:
            data = read_jsonc(current.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return
        if not isinstance(data, dict):
            return
        yield current, data
        extends = data.get("extends")
        for base in (
            [extends]
            if isinstance(extends, str)
            else [e for e in extends if isinstance(e, str)]
            if isinstance(extends, list)
            else []
        ):
            if base.startswith("."):
                target = current.parent / base
                queue.append(
                    target
                    if target.suffix == ".json" or target.is_file()
                    else target.with_name(target.name + ".json")
                )
            else:
                unresolved.append(base)


def _relative_to(path: Path, base: Path) -> str:
    """`path` relative to `base`, '/'-separated, possibly starting with '..'."""
    import os

    return Path(os.path.relpath(os.path.normpath(path), os.path.normpath(base))).as_posix()


# -- vite.config.* -------------------------------------------------------------------------------


@record
class ConfigValue:
    text: str  # the literal's value, or the expression as written
    static: bool  # False: an expression init does not evaluate
    anchored: bool = False  # relative to the config file's directory (__dirname,
    # import.meta.url), not to the directory Vite runs in


_KEY = re.compile(r"""([A-Za-z_$][\w$]*|'[^'\n]*'|"[^"\n]*")\s*:(?!:)""")
_RESOLVE = re.compile(
    r"""^(?:path\.)?(?:resolve|join)\(\s*__dirname\s*"""
    r"""((?:,\s*(['"])[^'"]*\2\s*)+)\)$"""
)
_URL = re.compile(
    r"""^fileURLToPath\(\s*new URL\(\s*(['"])([^'"]*)\1\s*,"""
    r"""\s*import\.meta\.url\s*\)\s*\)$"""
)


def object_entries(source: str) -> list[tuple[tuple[str | None, ...], str, ConfigValue]]:
    """Every `key: value` of the object literals in a JavaScript source, with the keys of
    the objects around it (None for an object that is not a key's value):
    `export default { build: { outDir: 'out' } }` gives ((None, "build"), "outDir", 'out')."""
    text = _mask_comments(source)
    entries: list[tuple[tuple[str | None, ...], str, ConfigValue]] = []
    stack: list[str | None] = []
    key: str | None = None  # the key whose value the next `{` opens
    previous = ""  # the last character that is not white space
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        match = _KEY.match(text, i) if stack and previous in ("{", ",") else None
        if match:
            key = match.group(1).strip("'\"")
            entries.append((tuple(stack), key, _value(text, match.end())))
            previous, i = ":", match.end()
            continue
        if c in "'\"`":
            i = _string_end(text, i)
        else:
            if c == "{":
                stack.append(key if previous == ":" else None)
            elif c == "}" and stack:
                stack.pop()
            i += 1
        key = None if c != "{" else key
        previous = c
    return entries


def _value(text: str, start: int) -> ConfigValue:
    """The value after a key's colon: a string literal's content, else the expression."""
    i = start
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] in "'\"":
        end = _string_end(text, i)
        rest = text[end:].lstrip()[:1]
        if rest in (",", "}", ""):
            return ConfigValue(text=text[i + 1 : end - 1], static=True)
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c in "'\"`":
            j = _string_end(text, j)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif c == "," and depth == 0:
            break
        j += 1
    expression = " ".join(text[i:j].split())
    return _static_path(expression)


def _static_path(expression: str) -> ConfigValue:
    """`resolve(__dirname, 'a', 'b')` -> a/b; `fileURLToPath(new URL('./x',
    import.meta.url))` -> ./x; anything else is not static."""
    match = _RESOLVE.match(expression)
    if match:
        parts = re.findall(r"""['"]([^'"]*)['"]""", match.group(1))
        return ConfigValue(text="/".join(parts), static=True, anchored=True)
    match = _URL.match(expression)
    if match:
        return ConfigValue(text=match.group(2), static=True, anchored=True)
    return ConfigValue(text=expression, static=False)


@record
class ViteSettings:
    config: str  # the file read, relative to the package ("" when there is none)
    out_dir: ConfigValue | None  # build.outDir
    root: ConfigValue | None  # `root` of the exported object itself (not of a plugin's)


def read_vite_config(package_dir: Path, config: str = "") -> ViteSettings:
    """build.outDir and root of the package's vite.config.* (or `config`)."""
    names = [config] if config else list(VITE_CONFIGS)
    for name in names:
        path = package_dir / name
        if not path.is_file():
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out_dir = root = None
        for stack, key, value in object_entries(source):
            named = [k for k in stack if k is not None]
            if key == "outDir" and named[-1:] == ["build"] and out_dir is None:
                out_dir = value
            elif key == "root" and len(stack) == 1 and root is None:  # the config object's
                root = value
        return ViteSettings(config=name, out_dir=out_dir, root=root)
    return ViteSettings(config="", out_dir=None, root=None)
