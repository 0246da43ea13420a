"""What a package.json build script writes, from the tools' own conventions.

A step's outputs are what the cache restores and what its dependents' fingerprints read,
and a declared output the command does not write fails the step. So `buildlib init`
declares an output only where a config or a tool's documented default says so:

- tsc: `--outDir`, else tsconfig's `outDir` (following relative `extends`), plus
  `declarationDir` and a `.tsbuildinfo` outside them; `noEmit` writes nothing.
- vite build: `--outDir`, else `build.outDir` of vite.config.* when it is a literal (or
  `resolve(__dirname, '...')`), else Vite's default `dist`, relative to Vite's root.
- napi build (napi-rs): `<binaryName>[.<platform>].node`, with `--platform` the JS loader
  (index.js unless `--no-js`) and the typings (index.d.ts) in `--output-dir`.
- anything else: when package.json's main/module/types/bin/exports point into a path that
  is not in the repository (dist/cli.js, with dist/ ignored), the build writes that path.
Otherwise the outputs are unknown and init writes a commented placeholder for the user.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from buildlib.core.records import record
from buildlib.ecosystems.js_config import ConfigValue, read_tsconfig, read_vite_config
from buildlib.ecosystems.node import NodePackage
from buildlib.ecosystems.package_scripts import command_segments
from buildlib.ecosystems.repo_files import RepoFiles

ENTRY_FIELDS = ("main", "module", "types", "typings", "bin", "exports", "browser")
# Segments that write nothing a later step reads (or only tool caches).
QUIET_TOOLS = frozenset({"echo", "svelte-check", "eslint", "prettier", "node", "true"})
# Options of `vite build` that take a value (the positional root is the other word).
_VITE_VALUE_FLAGS = frozenset(
    {
        "--outDir",
        "-c",
        "--config",
        "-m",
        "--mode",
        "--base",
        "-l",
        "--logLevel",
        "--filter",
        "--assetsDir",
        "--target",
        "--minify",
        "--sourcemap",
        "--ssr",
        "--manifest",
    }
)


@record
class OutputGuess:
    paths: tuple[str, ...]  # relative to the package directory; "//x" from the root
    reasons: tuple[str, ...]  # why each rule that found paths found them
    unknown: tuple[str, ...]  # why some command's writes are not known


@record
class _Found:
    paths: tuple[str, ...] = ()
    reason: str = ""
    unknown: str = ""  # set: this command writes something init cannot name


def build_outputs(
    package: NodePackage, command: str, files: RepoFiles, *, typedefs: bool = True
) -> OutputGuess:
    """The outputs of the build script `command` of `package`. `typedefs`: whether a
    napi-rs crate generates typings (napi-derive's default `type-def` feature)."""
    package_dir = files.root / package.dir
    found: list[_Found] = []
    unread: list[str] = []
    for words in command_segments(command):
        tool = words[0]
        if tool == "tsc":
            found.append(_tsc(package_dir, words[1:]))
        elif tool == "vite" and words[1:2] == ["build"]:
            found.append(_vite(package, package_dir, words[2:]))
        elif tool == "napi" and words[1:2] == ["build"]:
            found.append(_napi(package, words[2:], typedefs=typedefs))
        elif tool not in QUIET_TOOLS or (tool == "node" and len(words) > 1):
            unread.append(" ".join(words))
    paths = [p for f in found for p in f.paths]
    reasons = [f.reason for f in found if f.paths]
    unknown = [f.unknown for f in found if f.unknown]
    if unread and not paths:
        entries = _entry_points(package, files)
        if entries.paths:
            paths += entries.paths
            reasons.append(entries.reason)
        else:
            unknown += [f"init cannot tell what `{c}` writes" for c in unread]
    declared = []
    for path in paths:
        normal = _declarable(package.dir, path)
        if normal is None:
            unknown.append(
                f"{path} is outside the repository: declare what the build leaves inside it"
            )
        elif normal not in declared:
            declared.append(normal)
    return OutputGuess(
        paths=tuple(declared), reasons=tuple(dict.fromkeys(reasons)), unknown=tuple(unknown)
    )


def _declarable(package_dir: str, path: str) -> str | None:
    """`path` (relative to the package) as a step output: itself inside the package,
    "//x" (from the root) outside it, None outside the repository or the package
    directory itself."""
    normal = posixpath.normpath(path)
    if normal != ".." and not normal.startswith("../"):
        return None if normal == "." else normal
    full = posixpath.normpath(posixpath.join(package_dir, normal))
    if full in (".", "..") or full.startswith("../"):
        return None
    return "//" + full


def _options(words: Sequence[str], with_value: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(flag, value) pairs of `words` ("" for a flag without one; ("", word) for a
    positional word); `--flag=value` is split."""
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            flag, equals, value = word.partition("=")
            if not equals and flag in with_value and i + 1 < len(words):
                value = words[i + 1]
                i += 1
            yield flag, value
        else:
            yield "", word
        i += 1


# -- tsc -----------------------------------------------------------------------------------------


def _tsc(package_dir: Path, args: Sequence[str]) -> _Found:
    given = dict(
        _options(args, ("-p", "--project", "--outDir", "--declarationDir", "--tsBuildInfoFile"))
    )
    if "--noEmit" in given:
        return _Found(reason="tsc --noEmit writes nothing")
    build_mode = "-b" in given or "--build" in given
    config = (
        given.get("-p")
        or given.get("--project")
        or (given.get("", "") if build_mode else "")
        or "tsconfig.json"
    )
    read = read_tsconfig(package_dir, config)
    if read is None:
        if "--outDir" in given:
            return _Found(paths=(given["--outDir"],), reason="tsc --outDir")
        return _Found(unknown=f"tsc: no {config} to read its outDir from")
    options: Mapping[str, Any] = read.options
    name = config if config.endswith(".json") else f"{config.rstrip('/')}/tsconfig.json"
    name = name.removeprefix("./")
    if options.get("noEmit") is True:
        return _Found(reason=f"{name} sets noEmit: tsc writes nothing")
    out_dir = given.get("--outDir") or options.get("outDir")
    where = "tsc --outDir" if "--outDir" in given else f"{name}: compilerOptions.outDir"
    declaration_dir = given.get("--declarationDir") or options.get("declarationDir")
    paths: list[str] = []
    if out_dir and not (options.get("emitDeclarationOnly") and declaration_dir):
        paths.append(out_dir)
    if declaration_dir and not _inside(declaration_dir, out_dir):
        paths.append(declaration_dir)
        where += ", declarationDir"
    info = given.get("--tsBuildInfoFile") or options.get("tsBuildInfoFile")
    if info or build_mode or options.get("incremental") or options.get("composite"):
        info = info or posixpath.join(
            out_dir or posixpath.dirname(name),
            posixpath.basename(name).removesuffix(".json") + ".tsbuildinfo",
        )
        if not _inside(info, out_dir):
            paths.append(info)
            where += ", its .tsbuildinfo"
    if not paths:
        more = (
            f" ({name} extends {', '.join(read.unresolved)}, not read: it is a "
            "package, not installed yet)"
            if read.unresolved
            else ""
        )
        return _Found(unknown=f"tsc writes each .js beside its .ts: {name} sets no outDir{more}")
    return _Found(paths=tuple(paths), reason=where)


def _inside(path: str, directory: str | None) -> bool:
    if not directory:
        return False
    path, directory = posixpath.normpath(path), posixpath.normpath(directory)
    return path == directory or path.startswith(directory + "/")


# -- vite ----------------------------------------------------------------------------------------


def _vite(package: NodePackage, package_dir: Path, args: Sequence[str]) -> _Found:
    if "@sveltejs/kit" in package.dependencies:
        return _Found(
            unknown="SvelteKit writes .svelte-kit/output and its adapter's "
            "directory (build/ for adapter-static and adapter-node)"
        )
    given = dict(_options(args, tuple(_VITE_VALUE_FLAGS)))
    cli_root = given.get("", "")
    config_dir = posixpath.normpath(cli_root or ".")
    settings = read_vite_config(
        package_dir / config_dir, given.get("-c") or given.get("--config") or ""
    )
    config_name = posixpath.join(config_dir, settings.config).removeprefix("./")
    root = cli_root or "."
    if not cli_root and settings.root is not None:
        if not settings.root.static:
            return _Found(
                unknown=f"{config_name} sets root to `{settings.root.text}`, "
                "which init does not evaluate"
            )
        root = _anchor(settings.root, config_dir)
    if "--outDir" in given:
        return _Found(
            paths=(posixpath.join(root, given["--outDir"]),), reason="vite build --outDir"
        )
    value = settings.out_dir
    if value is None:
        why = (
            f"Vite's default build.outDir ({config_name} sets none)"
            if settings.config
            else "Vite's default build.outDir (no vite.config.*)"
        )
        return _Found(paths=(posixpath.join(root, "dist"),), reason=why)
    if not value.static:
        return _Found(
            unknown=f"{config_name} sets build.outDir to `{value.text}`, which "
            "init does not evaluate"
        )
    path = _anchor(value, config_dir) if value.anchored else posixpath.join(root, value.text)
    return _Found(paths=(path,), reason=f"{config_name}: build.outDir")


def _anchor(value: ConfigValue, config_dir: str) -> str:
    return posixpath.join(config_dir, value.text) if value.anchored else value.text


# -- napi-rs -------------------------------------------------------------------------------------


def napi_binary_name(package: NodePackage) -> str:
    """napi.binaryName (napi-rs 3), napi.name (2), else the CLI's default, "index"."""
    config = package.manifest.get("napi")
    if isinstance(config, dict):
        for key in ("binaryName", "name"):
            if isinstance(config.get(key), str) and config[key]:
                return str(config[key])
    return "index"


def _napi(package: NodePackage, args: Sequence[str], *, typedefs: bool) -> _Found:
    given = dict(
        _options(
            args,
            (
                "-o",
                "--output-dir",
                "--js",
                "--js-binding",
                "--dts",
                "-t",
                "--target",
                "--cwd",
                "-p",
                "--package",
                "--manifest-path",
                "--profile",
                "--target-dir",
                "-c",
                "--config-path",
                "--package-json-path",
            ),
        )
    )
    if "--cwd" in given:
        return _Found(
            unknown=f"napi build --cwd {given['--cwd']}: the outputs are relative to that directory"
        )
    out = given.get("-o") or given.get("--output-dir") or "."
    name = napi_binary_name(package)
    platform = "--platform" in given
    target = given.get("-t") or given.get("--target")
    if not platform:
        binary = f"{name}.node"
    elif target:
        binary = f"{name}.*.node"  # the cross target's platform name
    else:
        binary = f"{name}.{{node_triple}}.node"  # a built-in template: linux-x64-gnu...
    paths = [binary]
    if platform and "--no-js" not in given:
        paths.append(given.get("--js") or given.get("--js-binding") or "index.js")
    if typedefs:
        paths.append(given.get("--dts") or "index.d.ts")
    what = [
        "the binary",
        *(["its JS loader"] if len(paths) > 1 + typedefs else []),
        *(["its typings"] if typedefs else []),
    ]
    return _Found(
        paths=tuple(posixpath.join(out, p) for p in paths),
        reason="napi build writes " + ", ".join(what),
    )


# -- entry points --------------------------------------------------------------------------------


def _entry_points(package: NodePackage, files: RepoFiles) -> _Found:
    """The paths package.json publishes that the repository does not hold: the build
    writes them (the top directory, or the file at the package's top)."""
    written: dict[str, str] = {}
    for field_name in ENTRY_FIELDS:
        for path in _strings(package.manifest.get(field_name)):
            normal = posixpath.normpath(path)
            if "*" in normal or normal.startswith("..") or normal == ".":
                continue
            top = normal.split("/", 1)[0]
            in_repo = top if package.dir == "." else f"{package.dir}/{top}"
            if not files.exists(in_repo):
                written.setdefault(top, f"{field_name} {path}")
    if not written:
        return _Found()
    shown = "; ".join(f"package.json's {why}" for why in written.values())
    return _Found(
        paths=tuple(written), reason=f"{shown}: not in the repository, so the build writes it"
    )


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
