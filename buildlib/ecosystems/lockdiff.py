"""Whose resolved dependencies a lockfile change touches, package by package.

Turborepo and Nx mark every package of a workspace affected when its lockfile changes
in certain ways (a removed dependency, a changed root entry). A lockfile records, for
each package, exactly what it resolves to, so the question can be answered per package:
follow the package's own dependencies through the lockfile, at the base and now, and
compare the two closures. A package whose closure is the same is not affected, whatever
else the change did to the file.

`closures_changed` takes a lockfile's text at the base and now and the packages asked
about, as directories relative to the lockfile's (`packages/ui`; "." for the lockfile's
own directory, whose install takes everything, so any change counts). It answers True
(the closure differs), False (it does not) or None (cannot tell: an unknown format, a
package the lockfile does not list), which callers treat as changed.

Formats:
- `package-lock.json` / `npm-shrinkwrap.json` version 2 and 3: the `packages` map,
  keyed by install location; a name is resolved as Node does, from the requiring
  package's location upward (`packages/ui/node_modules/x`, then `node_modules/x`),
  links (`"link": true`) followed to the workspace package they point to. Version 1
  files (no `packages`) answer None.
- `Cargo.lock` (versions 1 to 4): `[[package]]` entries, dependencies written `name`,
  `name version` or `name version (source)`; a workspace member is the entry without a
  `source` whose name is the `[package] name` of the member's Cargo.toml (the caller
  reads it: `cargo_package_name`).
- `pnpm-lock.yaml` version 6 to 9: `importers.<dir>` and the `snapshots`/`packages`
  entries they name; `link:` versions lead to another importer.
- `yarn.lock` of Yarn 2+ (berry): entries keyed by descriptors, workspaces by
  `resolution: name@workspace:<dir>`. Yarn 1 files answer None.

No I/O, no subprocess: the caller reads the files (from git for the base).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Closure = dict[str, Any]

NPM_LOCKS = ("package-lock.json", "npm-shrinkwrap.json")
KINDS = {
    "package-lock.json": "npm",
    "npm-shrinkwrap.json": "npm",
    "Cargo.lock": "cargo",
    "pnpm-lock.yaml": "pnpm",
    "yarn.lock": "yarn",
}


class _Unreadable(Exception):  # noqa: N818 - internal: "answer None"
    """The text is not a lockfile this module understands."""


def lockfile_kind(path: str) -> str | None:
    """ "npm", "cargo", "pnpm", "yarn", or None for a file that is not a known lockfile."""
    return KINDS.get(posixpath.basename(path))


def closures_changed(
    kind: str,
    base: bytes | None,
    current: bytes | None,
    members: Iterable[str],
    *,
    cargo_names: Mapping[str, str] | None = None,
) -> dict[str, bool | None]:
    """For each member directory (relative to the lockfile's, "." for its own): whether
    its resolved dependency closure differs between `base` and `current` (None: the file
    is missing on one side, or cannot be read, or does not list the member)."""
    wanted = list(dict.fromkeys(members))
    answers: dict[str, bool | None] = {}
    if base == current:
        return dict.fromkeys(wanted, False)
    if base is None or current is None:
        return dict.fromkeys(wanted, None)
    try:
        old, new = _load(kind, base), _load(kind, current)
    except _Unreadable:
        return dict.fromkeys(wanted, None)
    for member in wanted:
        norm = posixpath.normpath(member)
        if norm == ".":
            answers[member] = True  # the lockfile's own directory installs everything
            continue
        if norm.startswith("../"):
            answers[member] = None
            continue
        try:
            name = (cargo_names or {}).get(member) if kind == "cargo" else norm
            if name is None:
                answers[member] = None
                continue
            before, after = _closure(kind, old, name), _closure(kind, new, name)
        except _Unreadable:
            answers[member] = None
            continue
        answers[member] = None if after is None else before != after
    return answers


def cargo_package_name(manifest: bytes) -> str | None:
    """`[package] name` of a Cargo.toml, or None (a virtual manifest, or not TOML)."""
    from buildlib.core import toml

    try:
        data = toml.loads(manifest.decode("utf-8"))
    except (UnicodeDecodeError, toml.TOMLDecodeError):
        return None
    package = data.get("package")
    name = package.get("name") if isinstance(package, dict) else None
    return name if isinstance(name, str) else None


def _load(kind: str, text: bytes) -> Any:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise _Unreadable from None
    if kind == "npm":
        try:
            data = json.loads(decoded)
        except ValueError:
            raise _Unreadable from None
        if not isinstance(data, dict) or not isinstance(data.get("packages"), dict):
            raise _Unreadable  # lockfile version 1: nested `dependencies` only
        return data["packages"]
    if kind == "cargo":
        from buildlib.core import toml

        try:
            data = toml.loads(decoded)
        except toml.TOMLDecodeError:
            raise _Unreadable from None
        packages = data.get("package", [])
        if not isinstance(packages, list):
            raise _Unreadable
        return [p for p in packages if isinstance(p, dict)]
    if kind in ("pnpm", "yarn"):
        if kind == "yarn" and "__metadata:" not in decoded:
            raise _Unreadable  # Yarn 1's own format
        return parse_yaml_subset(decoded)
    raise _Unreadable


def _closure(kind: str, data: Any, member: str) -> Closure | None:
    if kind == "npm":
        return _npm_closure(data, member)
    if kind == "cargo":
        return _cargo_closure(data, member)
    if kind == "pnpm":
        return _pnpm_closure(data, member)
    return _yarn_closure(data, member)


# -- npm ------------------------------------------------------------------------------------

_NPM_DEP_KEYS = ("dependencies", "optionalDependencies", "peerDependencies")


def _npm_closure(packages: Mapping[str, Any], member: str) -> Closure | None:
    if member not in packages:
        return None
    closure: Closure = {}
    todo = [member]
    while todo:
        location = todo.pop()
        if location in closure:
            continue
        entry = packages.get(location)
        closure[location] = entry
        if not isinstance(entry, dict):
            continue
        if entry.get("link"):
            target = entry.get("resolved")
            if isinstance(target, str):
                todo.append(target)
            continue
        # The package's own dev tools are installed for it; a dependency's are not.
        keys = (*_NPM_DEP_KEYS, "devDependencies") if location == member else _NPM_DEP_KEYS
        for key in keys:
            deps = entry.get(key)
            if not isinstance(deps, dict):
                continue
            for name in deps:
                found = _npm_resolve(packages, location, name)
                if found is None:
                    closure[f"(missing) {location} -> {name}"] = None
                else:
                    todo.append(found)
    return closure


def _npm_resolve(packages: Mapping[str, Any], location: str, name: str) -> str | None:
    """Where Node finds `name` required from the package at `location`: its own
    node_modules, then each directory above."""
    parts = location.split("/") if location else []
    while True:
        prefix = "/".join(parts)
        key = f"{prefix}/node_modules/{name}" if prefix else f"node_modules/{name}"
        if key in packages:
            return key
        if not parts:
            return None
        parts.pop()


# -- Cargo ----------------------------------------------------------------------------------


def _cargo_closure(packages: list[dict[str, Any]], crate: str) -> Closure | None:
    def key(entry: Mapping[str, Any]) -> str:
        return f"{entry.get('name')} {entry.get('version')} {entry.get('source', '')}".strip()

    by_name: dict[str, list[dict[str, Any]]] = {}
    for entry in packages:
        by_name.setdefault(str(entry.get("name")), []).append(entry)
    start = [e for e in by_name.get(crate, []) if "source" not in e]
    if len(start) != 1:
        return None
    closure: Closure = {}
    todo = start
    while todo:
        entry = todo.pop()
        name = key(entry)
        if name in closure:
            continue
        closure[name] = entry
        for dep in entry.get("dependencies", []):
            if not isinstance(dep, str):
                raise _Unreadable
            found = _cargo_resolve(by_name, dep)
            if found is None:
                closure[f"(missing) {name} -> {dep}"] = None
            else:
                todo.append(found)
    return closure


def _cargo_resolve(by_name: Mapping[str, list[dict[str, Any]]], dep: str) -> dict[str, Any] | None:
    """`name`, `name version` or `name version (source)`, as Cargo.lock writes them."""
    name, _, rest = dep.partition(" ")
    version, _, source = rest.partition(" ")
    source = source.strip("()")
    matches = [
        e
        for e in by_name.get(name, [])
        if (not version or e.get("version") == version)
        and (not source or e.get("source") == source)
    ]
    return matches[0] if len(matches) == 1 else None


# -- pnpm -----------------------------------------------------------------------------------

_PNPM_DEP_KEYS = ("dependencies", "devDependencies", "optionalDependencies")


def _pnpm_closure(doc: Mapping[str, Any], member: str) -> Closure | None:
    importers = doc.get("importers")
    if not isinstance(importers, dict) or member not in importers:
        return None
    snapshots = _mapping(doc.get("snapshots"))
    packages = _mapping(doc.get("packages"))
    closure: Closure = {}
    todo: list[tuple[str, str]] = [("importer", member)]
    while todo:
        kind, name = todo.pop()
        label = f"{kind} {name}"
        if label in closure:
            continue
        if kind == "importer":
            entry = importers.get(name)
            closure[label] = entry
            sections = _PNPM_DEP_KEYS if name == member else _PNPM_DEP_KEYS[::2]
            todo += _pnpm_importer_deps(entry, name, sections)
            continue
        # A package: its snapshot (v9; what it depends on) and its metadata (resolution).
        plain = name.split("(", 1)[0]
        snapshot = snapshots.get(name)
        meta = packages.get(plain, packages.get(f"/{plain}", packages.get(f"/{name}")))
        closure[label] = (snapshot, meta)
        todo += [
            ("package", f"{dep}@{version}")
            for holder in (snapshot, meta)
            for dep, version in _pnpm_package_deps(holder)
        ]
    return closure


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _pnpm_importer_deps(entry: object, name: str, sections: Sequence[str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if not isinstance(entry, dict):
        return found
    for section in sections:
        deps = entry.get(section)
        for dep, spec in deps.items() if isinstance(deps, dict) else ():
            version = spec.get("version") if isinstance(spec, dict) else spec
            if not isinstance(version, str):
                raise _Unreadable
            if version.startswith("link:"):
                found.append(("importer", posixpath.normpath(posixpath.join(name, version[5:]))))
            else:
                found.append(("package", f"{dep}@{version}"))
    return found


def _pnpm_package_deps(holder: object) -> list[tuple[str, str]]:
    if not isinstance(holder, dict):
        return []
    return [
        (dep, version)
        for section in ("dependencies", "optionalDependencies")
        if isinstance(holder.get(section), dict)
        for dep, version in holder[section].items()
        if isinstance(version, str)
    ]


# -- Yarn (berry) ---------------------------------------------------------------------------


def _yarn_closure(doc: Mapping[str, Any], member: str) -> Closure | None:
    by_descriptor: dict[str, str] = {}
    for keys in doc:
        for descriptor in keys.split(","):
            by_descriptor[descriptor.strip()] = keys
    start = [
        keys
        for keys, entry in doc.items()
        if isinstance(entry, dict)
        and str(entry.get("resolution", "")).endswith(f"@workspace:{member}")
    ]
    if len(start) != 1:
        return None
    closure: Closure = {}
    todo = start
    while todo:
        keys = todo.pop()
        if keys in closure:
            continue
        entry = doc.get(keys)
        closure[keys] = entry
        if not isinstance(entry, dict):
            continue
        for section in ("dependencies", "peerDependencies", "optionalDependencies"):
            deps = entry.get(section)
            for dep, spec in deps.items() if isinstance(deps, dict) else ():
                found = by_descriptor.get(f"{dep}@{spec}")
                if found is None and ":" not in str(spec):
                    found = by_descriptor.get(f"{dep}@npm:{spec}")
                if found is None:
                    closure[f"(missing) {keys} -> {dep}@{spec}"] = None
                    continue
                todo.append(found)
                # Yarn's built-in patches (typescript, fsevents, resolve) sit beside it.
                todo += [k for d, k in by_descriptor.items() if d.startswith(f"{dep}@patch:{dep}@")]
    return closure


# -- the YAML lockfiles use -----------------------------------------------------------------


def parse_yaml_subset(text: str) -> dict[str, Any]:
    """The YAML pnpm and Yarn write in their lockfiles: nested block mappings indented
    by spaces, plain or quoted keys and scalars; flow collections (`{...}`, `[...]`) are
    kept as their text, which is all a comparison needs. Anything else (a block
    sequence, a multi-line scalar, a tab) raises _Unreadable, so the caller falls back
    to "changed". The result is only compared, never interpreted further."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(0, root)]  # (indent of its keys, mapping)
    pending: tuple[int, dict[str, Any], str] | None = None  # a key waiting for its block
    for raw_line in text.splitlines():
        stripped = raw_line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw_line) - len(raw_line.lstrip(" "))
        if raw_line[indent] == "\t" or stripped.startswith("- ") or stripped == "-":
            raise _Unreadable
        if pending is not None:
            parent_indent, parent, key = pending
            pending = None
            if indent > parent_indent:
                child: dict[str, Any] = {}
                parent[key] = child
                stack.append((indent, child))
            else:
                parent[key] = None
        while stack[-1][0] > indent:
            stack.pop()
        current_indent, mapping = stack[-1]
        if current_indent != indent:
            raise _Unreadable  # a line indented between two levels
        key, value = _split_key(stripped)
        if value == "":
            pending = (indent, mapping, key)
        else:
            mapping[key] = _scalar(value)
    if pending is not None:
        pending[1][pending[2]] = None
    return root


def _split_key(line: str) -> tuple[str, str]:
    if line[0] in "\"'":
        quote = line[0]
        end = 1
        while True:
            end = line.find(quote, end)
            if end < 0:
                raise _Unreadable
            if quote == "'" and line[end + 1 : end + 2] == "'":
                end += 2
                continue
            if quote == '"' and line[end - 1] == "\\":
                end += 1
                continue
            break
        key = _unquote(line[: end + 1])
        rest = line[end + 1 :]
        if not rest.startswith(":"):
            raise _Unreadable
        return key, rest[1:].strip()
    key, sep, value = line.partition(": ")
    if not sep:
        if not line.endswith(":"):
            raise _Unreadable
        return line[:-1].strip(), ""
    return key.strip(), value.strip()


def _scalar(value: str) -> str:
    if value[0] in "\"'":
        return _unquote(value)
    if " #" in value:
        value = value.split(" #", 1)[0].rstrip()
    return value


def _unquote(text: str) -> str:
    if len(text) < 2 or text[-1] != text[0]:
        raise _Unreadable
    if text[0] == "'":
        return text[1:-1].replace("''", "'")
    try:
        value = json.loads(text)
    except ValueError:
        raise _Unreadable from None
    if not isinstance(value, str):
        raise _Unreadable
    return value
