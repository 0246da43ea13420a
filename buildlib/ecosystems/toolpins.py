"""Files that choose a tool's version, and the programs they choose it for.

A tool's version is not in git, but what pins it often is: rustup reads
`rust-toolchain.toml` from the step's directory upward, nvm and fnm read `.nvmrc`,
asdf and mise read `.tool-versions`, corepack reads `packageManager` in package.json.
When such a file changes between the base and the work tree, the steps that run one of
its programs below its directory get another version of the tool, on every machine,
even one that never built the base (a CI runner): `--affected` marks them
`tool-version-changed`.

`pinned_programs` answers for a file name; `package_json_pins` compares the fields of
two package.json texts that pin tools. Pure: the caller reads the files.
"""

from __future__ import annotations

import json
import posixpath

ANY = frozenset({"*"})  # the file may pin any program (asdf, mise)
RUST = frozenset(
    {"cargo", "rustc", "rustup", "rustdoc", "rustfmt", "cargo-clippy", "clippy-driver", "cargo-fmt"}
)
NODE = frozenset({"node", "npm", "npx", "corepack", "pnpm", "pnpx", "yarn"})
PYTHON = frozenset({"python", "python3", "pip", "pip3"})
PACKAGE_MANAGERS = frozenset({"npm", "npx", "pnpm", "pnpx", "yarn", "corepack"})

PIN_FILES: dict[str, frozenset[str]] = {
    "rust-toolchain": RUST,
    "rust-toolchain.toml": RUST,
    ".nvmrc": NODE,
    ".node-version": NODE,
    ".python-version": PYTHON,
    ".tool-versions": ANY,
    ".mise.toml": ANY,
    "mise.toml": ANY,
    ".mise.local.toml": ANY,
}


def pinned_programs(path: str) -> frozenset[str] | None:
    """The programs a file of this name pins (ANY: every one), or None."""
    return PIN_FILES.get(posixpath.basename(path))


def program_of(argv: tuple[str, ...] | list[str]) -> str:
    """The program a tool's version command runs, as a pin file names it: `rustc` for
    `["/usr/bin/rustc", "-vV"]`, `node` for `node.exe`."""
    name = posixpath.basename(argv[0].replace("\\", "/")) if argv else ""
    for suffix in (".exe", ".cmd", ".bat"):
        name = name.removesuffix(suffix)
    return name


def package_json_pins(base: bytes | None, current: bytes | None) -> frozenset[str]:
    """The programs whose pin differs between two package.json texts: `packageManager`
    (corepack) pins the package manager, `volta` pins node and the package managers,
    `devEngines` declares both. Unreadable text pins nothing (it changes nothing here;
    the file is still an input of whatever step declares it)."""
    before, after = _fields(base), _fields(current)
    changed: set[str] = set()
    for key, programs in (
        ("packageManager", PACKAGE_MANAGERS),
        ("volta", NODE),
        ("devEngines", NODE),
    ):
        if before.get(key) != after.get(key):
            changed |= programs
    return frozenset(changed)


def _fields(text: bytes | None) -> dict[str, object]:
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
