"""Realistic repositories for tests, in the shapes users have, with real lockfiles.

Each builder writes a repository into ``root`` (created if missing) and returns a `Repo`
describing it: the package manager, every package (its directory, name, scripts, the
workspace packages it depends on, what its build writes) and the committed lockfiles.

    npm_workspace(root)          npm workspaces: tsc library, Vite + Svelte 5 app, node CLI
    cargo_workspace(root)        Cargo workspace: library, clap CLI, napi-rs Node module
    polyglot_repo(root)          both in one repository (the napi package is an npm member)
    pnpm_workspace(root)         two packages, pnpm-workspace.yaml, pnpm-lock.yaml
    yarn_berry_workspace(root)   two packages, Yarn 4 (committed .yarn/releases), yarn.lock
    git_init(root)               one commit, author set in the repository's own config
    git_commit(root, message)    another commit of everything in the work tree
    relock(root, manager)        the npm or Cargo lockfile again, after a manifest edit

Lockfiles are made by the real tools (``npm install``, ``cargo generate-lockfile``, pnpm and
Yarn installed from the npm registry), once per machine: the lockfiles alone (never
node_modules) are kept under ``$BUILDLIB_TEST_REPOS_CACHE`` (default
``~/.cache/buildlib-test-repos``) in ``locks/<key>/``, next to the ``key.json`` they were
made from. The key is a SHA-256 of everything that decides the lockfile: the manifests (every
package.json, Cargo.toml, pnpm-workspace.yaml, .yarnrc.yml, .npmrc: paths and bytes), the
versions of the tools that write it (node, npm, cargo, pnpm, yarn, and npm's registry URL,
which package-lock.json records), the commands run and `SCHEMA`. Edit a template, upgrade a
tool or change a command and the key changes: a cached lockfile never goes stale silently.
What the key does not cover is the registry's content: a cached lockfile keeps the transitive
versions that were newest when it was made (that is what makes it stable); delete the
directory to re-resolve. Generation runs in a scratch copy, holding an ``fcntl.flock`` on
``locks/<key>.lock`` (pytest-xdist workers may ask for the same repository at once: one
generates, the others wait, then copy), and publishes the entry with one atomic rename, so a
reader never sees half an entry.

Every direct dependency is pinned to an exact version (Cargo: ``=x.y.z``); the npm and Cargo
versions are the ones this repository's own app uses (web/, crates/tachikoma-native), so
their downloads are usually in the local npm and Cargo caches already.

No buildlib import: the repositories are inputs for buildlib, not products of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PINNED",
    "Package",
    "Repo",
    "RepoError",
    "cache_dir",
    "cargo_workspace",
    "git_commit",
    "git_init",
    "npm_workspace",
    "pnpm_executable",
    "pnpm_workspace",
    "polyglot_repo",
    "relock",
    "tool_env",
    "yarn_berry_workspace",
    "yarn_release",
]

# Bump to invalidate every cached lockfile (e.g. when what a generation does changes in a
# way the recorded commands do not show).
SCHEMA = 1

CACHE_ENV = "BUILDLIB_TEST_REPOS_CACHE"

# pnpm 10 is the newest pnpm that runs on Node 20 (pnpm 11 needs Node 22; pnpm 12 is a native
# binary that warns it cannot record the packageManager pin): what most users have.
PNPM_VERSION = "10.34.9"
YARN_VERSION = "4.18.1"
NAPI_CLI_VERSION = "3.10.12"

# Exact versions of every direct dependency, shared by all templates.
PINNED: Mapping[str, str] = {
    # npm (as in web/package.json and crates/tachikoma-native/package.json)
    "typescript": "6.0.3",
    "vite": "8.3.8",
    "svelte": "5.57.3",
    "@sveltejs/vite-plugin-svelte": "7.3.1",
    "svelte-check": "4.7.8",
    "@napi-rs/cli": NAPI_CLI_VERSION,
    # crates (as in Cargo.lock)
    "napi": "=3.16.1",
    "napi-derive": "=3.7.0",
    "napi-build": "=2.6.0",
    "clap": "=4.6.9",
}

# The napi-rs targets the native packages declare (the triples this repository's app builds).
NAPI_TARGETS = (
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-msvc",
    "aarch64-pc-windows-msvc",
)

_TIMEOUT = 1200.0


class RepoError(RuntimeError):
    """A tool failed while making a repository (the message has its command and output)."""


# --- descriptions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One package or crate of a generated repository.

    A napi-rs crate is two packages in the same directory: the Cargo crate (manager "cargo")
    and the npm package around it (manager "npm").
    """

    name: str
    path: Path  # relative to the repository root
    manager: str  # "npm" | "pnpm" | "yarn" | "cargo"
    scripts: Mapping[str, str] = field(default_factory=dict)  # package.json scripts
    depends_on: tuple[str, ...] = ()  # names of packages of the same repository
    outputs: tuple[Path, ...] = ()  # what its build script writes, relative to the root


@dataclass(frozen=True)
class Repo:
    root: Path
    package_manager: str  # "npm" | "pnpm" | "yarn" | "cargo"
    packages: tuple[Package, ...]
    lockfiles: tuple[Path, ...]  # relative to root
    tools: Mapping[str, str]  # tool -> version the lockfiles were made with
    install_command: tuple[str, ...]  # frozen install (npm ci, --frozen-lockfile, ...)
    build_command: tuple[str, ...]  # every package's build, in dependency order
    path_dirs: tuple[Path, ...] = ()  # put on PATH for the commands (pnpm's own directory)

    def package(self, name: str, manager: str | None = None) -> Package:
        found = [
            p for p in self.packages if p.name == name and (manager is None or p.manager == manager)
        ]
        if len(found) != 1:
            raise KeyError(f"{name!r}: {len(found)} packages of that name in {self.root}")
        return found[0]

    def dir(self, name: str, manager: str | None = None) -> Path:
        return self.root / self.package(name, manager).path

    def names(self, manager: str | None = None) -> list[str]:
        return [p.name for p in self.packages if manager is None or p.manager == manager]

    def env(self) -> dict[str, str]:
        """`tool_env()` with this repository's tools on PATH."""
        env = tool_env()
        if self.path_dirs:
            env["PATH"] = os.pathsep.join([*map(str, self.path_dirs), env.get("PATH", "")])
        return env


# --- environment and tools ----------------------------------------------------------------


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "buildlib-test-repos"


def tool_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to run package managers in: quiet, no Electron download, corepack
    pointed at the npm registry, nothing inherited from an outer ``npm run``."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith(
            (
                "npm_lifecycle_",
                "npm_package_",
                "npm_execpath",
                "npm_node_execpath",
                "PNPM_SCRIPT_SRC_DIR",
                "BERRY_BIN_FOLDER",
                "INIT_CWD",
                "PROJECT_CWD",
            )
        )
    }
    env.update(
        {
            "ELECTRON_SKIP_BINARY_DOWNLOAD": "1",
            "npm_config_update_notifier": "false",
            "npm_config_fund": "false",
            "npm_config_audit": "false",
            "YARN_ENABLE_TELEMETRY": "0",
            "YARN_ENABLE_PROGRESS_BARS": "0",
            "COREPACK_ENABLE_STRICT": "0",
            "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0",
        }
    )
    env.setdefault("COREPACK_NPM_REGISTRY", "https://registry.npmjs.org")
    return env


def _run(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = _TIMEOUT
) -> str:
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env or tool_env()),
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RepoError(f"{' '.join(argv)} (in {cwd}): {e}") from e
    if done.returncode != 0:
        raise RepoError(
            f"{' '.join(argv)} (in {cwd}) exited {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done.stdout


@functools.cache
def _version(*argv: str) -> str:
    return _run(argv, Path.home()).strip().removeprefix("v")


def _npm_registry() -> str:
    """package-lock.json records tarball URLs, so the registry is part of its key."""
    return _version("npm", "config", "get", "registry")


def _node_version() -> str:
    return _version("node", "--version")


def _npm_version() -> str:
    return _version("npm", "--version")


def _cargo_version() -> str:
    return _version("cargo", "--version")  # "cargo 1.95.0 (f2d3ce0bd 2026-03-21)"


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def pnpm_executable(version: str = PNPM_VERSION) -> Path:
    """pnpm ``version`` installed from the npm registry into the cache (once per machine)."""
    home = cache_dir() / "tools" / f"pnpm-{version}"
    exe = home / "node_modules" / ".bin" / "pnpm"
    if not exe.exists():
        with _flock(home.with_name(home.name + ".lock")):
            if not exe.exists():
                tmp = Path(tempfile.mkdtemp(prefix=f".pnpm-{version}-", dir=home.parent))
                try:
                    _run(
                        [
                            "npm",
                            "install",
                            "--prefix",
                            str(tmp),
                            f"pnpm@{version}",
                            "--no-package-lock",
                            "--no-save",
                        ],
                        tmp,
                    )
                    tmp.rename(home)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    return exe


def yarn_release(version: str = YARN_VERSION) -> Path:
    """Yarn's single-file release (bin/yarn.js of @yarnpkg/cli-dist), cached once per machine."""
    release = cache_dir() / "tools" / f"yarn-{version}.cjs"
    if not release.exists():
        with _flock(release.with_name(release.name + ".lock")):
            if not release.exists():
                tmp = Path(tempfile.mkdtemp(prefix=f".yarn-{version}-", dir=release.parent))
                try:
                    _run(
                        [
                            "npm",
                            "pack",
                            f"@yarnpkg/cli-dist@{version}",
                            "--pack-destination",
                            str(tmp),
                        ],
                        tmp,
                    )
                    (tarball,) = tmp.glob("*.tgz")
                    with tarfile.open(tarball) as tar:
                        member = tar.extractfile("package/bin/yarn.js")
                        if member is None:
                            raise RepoError(f"{tarball.name} has no package/bin/yarn.js")
                        (tmp / "yarn.cjs").write_bytes(member.read())
                    (tmp / "yarn.cjs").rename(release)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    return release


# --- the lockfile cache ---------------------------------------------------------------------

_SKIP_DIRS = frozenset({".git", "node_modules", "target", "dist", ".yarn"})


@dataclass(frozen=True)
class _LockSpec:
    label: str
    cwd: str  # where the commands run, relative to the root
    manifests: tuple[str, ...]  # file names (anywhere under cwd) that determine the lockfile
    commands: tuple[tuple[str, ...], ...]  # a first word "{pnpm}" is the cached pnpm
    outputs: tuple[str, ...]  # lockfiles, relative to cwd
    tools: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...] = ()


def _manifest_files(top: Path, names: Sequence[str]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        found += [Path(dirpath, f) for f in sorted(filenames) if f in names]
    return found


def _cache_key(root: Path, spec: _LockSpec) -> tuple[str, dict[str, Any]]:
    top = root / spec.cwd
    material = {
        "schema": SCHEMA,
        "label": spec.label,
        "commands": [list(c) for c in spec.commands],
        "env": dict(spec.env),
        "outputs": list(spec.outputs),
        "tools": dict(spec.tools),
        "manifests": {
            p.relative_to(top).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in _manifest_files(top, spec.manifests)
        },
    }
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32], material


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(
        src,
        dst,
        symlinks=True,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".git", "node_modules", "target"),
    )


def _generate(root: Path, spec: _LockSpec, entry: Path, material: dict[str, Any]) -> None:
    """Run the commands in a scratch copy of ``root``; publish the lockfiles as ``entry``."""
    scratch = Path(tempfile.mkdtemp(prefix=f".scratch-{spec.label}-", dir=entry.parent))
    try:
        work = scratch / "repo"
        _copy_tree(root, work)
        env = tool_env()
        env.update(spec.env)
        for command in spec.commands:
            argv = list(command)
            if argv[0] == "{pnpm}":
                argv[0] = str(pnpm_executable(dict(spec.tools)["pnpm"]))
            _run(argv, work / spec.cwd, env)
        staged = scratch / "entry"
        for out in spec.outputs:
            made = work / spec.cwd / out
            if not made.is_file():
                raise RepoError(
                    f"{spec.label}: {' && '.join(map(' '.join, spec.commands))} wrote no {out}"
                )
            (staged / out).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(made, staged / out)
        (staged / "key.json").write_text(json.dumps(material, indent=2, sort_keys=True) + "\n")
        staged.rename(entry)  # atomic: an entry is complete or absent
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _lock(root: Path, spec: _LockSpec) -> list[Path]:
    """Write spec's lockfiles into root, from the cache or by running the tool once."""
    key, material = _cache_key(root, spec)
    locks = cache_dir() / "locks"
    entry = locks / key
    if not entry.is_dir():
        with _flock(locks / f"{key}.lock"):
            if not entry.is_dir():
                _generate(root, spec, entry, material)
    written = []
    for out in spec.outputs:
        target = root / spec.cwd / out
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entry / out, target)
        written.append(target.relative_to(root))
    return written


def relock(root: Path, manager: str, cwd: str = ".") -> list[Path]:
    """Write the lockfile of ``manager`` ("npm" or "cargo") again after a manifest was edited
    (e.g. a dependency added to one workspace package), keeping every resolution the
    committed lockfile already has, as a developer's `npm install` / `cargo update
    --workspace` does: from the cache when these exact manifests were locked before, else by
    running the tool. Returns the lockfiles written."""
    # The committed lockfile is part of the key: the result starts from it.
    if manager == "npm":
        spec = _npm_lock(cwd)
        return _lock(
            root,
            _LockSpec(
                label="npm-relock",
                cwd=cwd,
                manifests=(*spec.manifests, "package-lock.json"),
                commands=spec.commands,
                outputs=spec.outputs,
                tools=spec.tools,
            ),
        )
    if manager == "cargo":
        return _lock(
            root,
            _LockSpec(
                label="cargo-update",
                cwd=cwd,
                manifests=("Cargo.toml", "Cargo.lock"),
                commands=(("cargo", "update", "--workspace"),),
                outputs=("Cargo.lock",),
                tools=(("cargo", _cargo_version()),),
            ),
        )
    raise RepoError(f"relock: no lockfile recipe for {manager!r}")


def _npm_lock(cwd: str = ".") -> _LockSpec:
    return _LockSpec(
        label="npm",
        cwd=cwd,
        manifests=("package.json", ".npmrc"),
        # Scripts add nothing to the lockfile (and napi/Electron ones would download).
        commands=(("npm", "install", "--ignore-scripts", "--no-audit", "--no-fund"),),
        outputs=("package-lock.json",),
        tools=(
            ("node", _node_version()),
            ("npm", _npm_version()),
            ("npm registry", _npm_registry()),
        ),
    )


def _cargo_lock() -> _LockSpec:
    return _LockSpec(
        label="cargo",
        cwd=".",
        manifests=("Cargo.toml",),
        commands=(("cargo", "generate-lockfile"),),
        outputs=("Cargo.lock",),
        tools=(("cargo", _cargo_version()),),
    )


# --- writing files --------------------------------------------------------------------------


def _json(obj: object) -> str:
    return json.dumps(obj, indent=2) + "\n"


def _text(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _deps(manifest: Mapping[str, Any], names: set[str]) -> tuple[str, ...]:
    found: list[str] = []
    for section in ("dependencies", "devDependencies", "peerDependencies"):
        found += [n for n in manifest.get(section, {}) if n in names and n not in found]
    return tuple(found)


def _js_packages(
    manager: str, manifests: Mapping[str, Mapping[str, Any]], outputs: Mapping[str, Sequence[str]]
) -> list[Package]:
    names = {m["name"] for m in manifests.values()}
    return [
        Package(
            name=m["name"],
            path=Path(d),
            manager=manager,
            scripts=dict(m.get("scripts", {})),
            depends_on=_deps(m, names),
            outputs=tuple(Path(o) for o in outputs.get(d, ())),
        )
        for d, m in manifests.items()
    ]


GITIGNORE = "node_modules/\ndist/\ntarget/\n"


# --- npm workspace ----------------------------------------------------------------------------


def _core_files(d: str) -> tuple[dict[str, Any], dict[str, str]]:
    manifest = {
        "name": "@demo/core",
        "version": "0.1.0",
        "private": True,
        "description": "Text helpers, compiled by tsc",
        "type": "module",
        "main": "dist/index.js",
        "types": "dist/index.d.ts",
        "exports": {".": {"types": "./dist/index.d.ts", "default": "./dist/index.js"}},
        "files": ["dist"],
        "scripts": {
            "build": "tsc -p tsconfig.json",
            "typecheck": "tsc -p tsconfig.json --noEmit",
            "test": "node --test test/index.test.js",
        },
        "devDependencies": {"typescript": PINNED["typescript"]},
    }
    tsconfig = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "rootDir": "src",
            "outDir": "dist",
            "declaration": True,
            "sourceMap": True,
            "strict": True,
            "skipLibCheck": True,
            "types": [],
        },
        "include": ["src"],
    }
    files = {
        f"{d}/package.json": _json(manifest),
        f"{d}/tsconfig.json": _json(tsconfig),
        f"{d}/src/index.ts": _text("""
            export interface Stats {
              lines: number
              words: number
            }

            export function greet(name: string): string {
              return `Hello, ${name}!`
            }

            export function slugify(text: string): string {
              return text
                .toLowerCase()
                .replace(/[^a-z0-9]+/g, '-')
                .replace(/^-+|-+$/g, '')
            }

            export function stats(text: string): Stats {
              const words = text.split(/\\s+/).filter((w) => w.length > 0)
              return { lines: text === '' ? 0 : text.split('\\n').length, words: words.length }
            }
        """),
        f"{d}/test/index.test.js": _text("""
            import assert from 'node:assert/strict'
            import { test } from 'node:test'
            import { greet, slugify, stats } from '../dist/index.js'

            test('greet', () => {
              assert.equal(greet('world'), 'Hello, world!')
            })

            test('slugify', () => {
              assert.equal(slugify('  Hello, World! '), 'hello-world')
            })

            test('stats', () => {
              assert.deepEqual(stats('one two\\nthree'), { lines: 2, words: 3 })
            })
        """),
    }
    return manifest, files


def _ui_files(d: str) -> tuple[dict[str, Any], dict[str, str]]:
    manifest = {
        "name": "@demo/ui",
        "version": "0.1.0",
        "private": True,
        "description": "The UI: Svelte 5, built by Vite into dist/",
        "type": "module",
        "scripts": {
            "dev": "vite",
            "build": "vite build",
            "check": "svelte-check --tsconfig ./tsconfig.json --fail-on-warnings",
            "preview": "vite preview",
        },
        "dependencies": {"@demo/core": "0.1.0"},
        "devDependencies": {
            k: PINNED[k]
            for k in (
                "@sveltejs/vite-plugin-svelte",
                "svelte",
                "svelte-check",
                "typescript",
                "vite",
            )
        },
    }
    tsconfig = {
        "compilerOptions": {
            "target": "ES2022",
            "lib": ["ES2022", "DOM", "DOM.Iterable"],
            "module": "ESNext",
            "moduleResolution": "bundler",
            "types": ["vite/client"],
            "verbatimModuleSyntax": True,
            "isolatedModules": True,
            "strict": True,
            "skipLibCheck": True,
            "allowJs": True,
            "checkJs": True,
            "noEmit": True,
        },
        "include": ["src/**/*.ts", "src/**/*.js", "src/**/*.svelte"],
    }
    files = {
        f"{d}/package.json": _json(manifest),
        f"{d}/tsconfig.json": _json(tsconfig),
        f"{d}/vite.config.ts": _text("""
            import { svelte } from '@sveltejs/vite-plugin-svelte'
            import { defineConfig } from 'vite'

            export default defineConfig({
              base: './',
              plugins: [svelte()],
              build: {
                outDir: 'dist',
                emptyOutDir: true,
              },
            })
        """),
        f"{d}/svelte.config.js": _text("""
            import { vitePreprocess } from '@sveltejs/vite-plugin-svelte'

            export default {
              preprocess: vitePreprocess(),
            }
        """),
        f"{d}/index.html": _text("""
            <!doctype html>
            <html lang="en">
              <head>
                <meta charset="UTF-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1.0" />
                <title>demo</title>
              </head>
              <body>
                <div id="app"></div>
                <script type="module" src="/src/main.ts"></script>
              </body>
            </html>
        """),
        f"{d}/src/main.ts": _text("""
            import { mount } from 'svelte'
            import App from './App.svelte'

            const target = document.getElementById('app')
            if (target === null) throw new Error('no #app element')

            export default mount(App, { target })
        """),
        f"{d}/src/App.svelte": _text("""
            <script lang="ts">
              import { greet, slugify, stats } from '@demo/core'

              let text = $state('Hello from Svelte')
              const counts = $derived(stats(text))
            </script>

            <main>
              <h1>{greet('Svelte')}</h1>
              <textarea bind:value={text}></textarea>
              <p>{counts.lines} lines, {counts.words} words, slug: {slugify(text)}</p>
            </main>

            <style>
              main {
                font-family: system-ui, sans-serif;
              }
            </style>
        """),
        f"{d}/src/vite-env.d.ts": _text("""
            /// <reference types="svelte" />
            /// <reference types="vite/client" />
        """),
    }
    return manifest, files


def _cli_files(d: str, *, native: bool) -> tuple[dict[str, Any], dict[str, str]]:
    deps = {"@demo/core": "0.1.0"}
    if native:
        deps["@demo/native"] = "0.1.0"
    manifest = {
        "name": "@demo/cli",
        "version": "0.1.0",
        "private": True,
        "description": "The command line, plain Node.js",
        "type": "module",
        "bin": {"demo-js": "dist/cli.js"},
        "scripts": {"build": "node scripts/build.js", "start": "node dist/cli.js"},
        "dependencies": deps,
    }
    native_import = "import native from '@demo/native'\n" if native else ""
    native_line = "console.log(native.slugify(name))\n" if native else ""
    files = {
        f"{d}/package.json": _json(manifest),
        f"{d}/scripts/build.js": _text("""
            // Copies src/ to dist/ and makes the entry point executable.
            import { chmodSync, cpSync, rmSync } from 'node:fs'

            rmSync('dist', { recursive: true, force: true })
            cpSync('src', 'dist', { recursive: true })
            chmodSync('dist/cli.js', 0o755)
            console.log('copied src/ to dist/')
        """),
        f"{d}/src/cli.js": (
            "#!/usr/bin/env node\n"
            "import { greet } from '@demo/core'\n"
            f"{native_import}\n"
            "const name = process.argv[2] ?? 'world'\n"
            "console.log(greet(name))\n"
            f"{native_line}"
        ),
    }
    return manifest, files


def _npm_root_manifest(workspaces: list[str]) -> dict[str, Any]:
    return {
        "name": "demo-monorepo",
        "version": "0.0.0",
        "private": True,
        "packageManager": f"npm@{_npm_version()}",
        "workspaces": workspaces,
        "scripts": {
            "build": "npm run build --workspaces --if-present",
            "test": "npm run test --workspaces --if-present",
        },
    }


def _npm_members(*, native: bool) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    manifests: dict[str, dict[str, Any]] = {}
    files: dict[str, str] = {}
    for d, (manifest, fs) in {
        "packages/core": _core_files("packages/core"),
        "packages/ui": _ui_files("packages/ui"),
        "packages/cli": _cli_files("packages/cli", native=native),
    }.items():
        manifests[d] = manifest
        files |= fs
    return manifests, files


_NPM_OUTPUTS = {d: [f"{d}/dist"] for d in ("packages/core", "packages/ui", "packages/cli")}


def npm_workspace(root: Path) -> Repo:
    """npm workspaces ("packages/*") of @demo/core (TypeScript, tsc into dist/, node --test),
    @demo/ui (Vite + Svelte 5, svelte-check, depends on core) and @demo/cli (plain Node.js,
    a node script copies src/ to dist/, depends on core), with package-lock.json."""
    root.mkdir(parents=True, exist_ok=True)
    manifests, files = _npm_members(native=False)
    _write(
        root,
        {
            "package.json": _json(_npm_root_manifest(["packages/*"])),
            ".gitignore": GITIGNORE,
            **files,
        },
    )
    lockfiles = _lock(root, _npm_lock())
    return Repo(
        root=root,
        package_manager="npm",
        packages=tuple(_js_packages("npm", manifests, _NPM_OUTPUTS)),
        lockfiles=tuple(lockfiles),
        tools={"node": _node_version(), "npm": _npm_version()},
        install_command=("npm", "ci"),
        build_command=("npm", "run", "build", "--workspaces", "--if-present"),
    )


# --- Cargo workspace ------------------------------------------------------------------------


def _napi_platform() -> str:
    """The suffix `napi build --platform` gives the .node file on this machine."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    if sys.platform == "darwin":
        return f"darwin-{arch}"
    if sys.platform == "win32":
        return f"win32-{arch}-msvc"
    return f"linux-{arch}-gnu"


def _crate_toml(name: str, body: str) -> str:
    return _text(f"""
        [package]
        name = "{name}"
        version.workspace = true
        edition.workspace = true
        license.workspace = true
        publish.workspace = true
    """) + _text(body)


def _cargo_files(native_dir: str) -> tuple[dict[str, str], dict[str, Any]]:
    members = ["crates/core", "crates/cli", native_dir]
    native_manifest = {
        "name": "@demo/native",
        "version": "0.1.0",
        "private": True,
        "description": "demo-core as a Node-API module, built by @napi-rs/cli",
        "main": "index.js",
        "types": "index.d.ts",
        "files": ["index.js", "index.d.ts", "*.node"],
        "napi": {"binaryName": "demo-native", "targets": list(NAPI_TARGETS)},
        "engines": {"node": ">=20"},
        "scripts": {
            "build": "napi build --platform --release",
            "build:debug": "napi build --platform",
        },
        "devDependencies": {"@napi-rs/cli": PINNED["@napi-rs/cli"]},
    }
    files = {
        "Cargo.toml": _text(f"""
            [workspace]
            resolver = "2"
            members = {json.dumps(members)}

            [workspace.package]
            version = "0.1.0"
            edition = "2021"
            license = "MIT"
            publish = false

            [workspace.dependencies]
            demo-core = {{ path = "crates/core" }}
            clap = {{ version = "{PINNED["clap"]}", features = ["derive"] }}
            napi = "{PINNED["napi"]}"
            napi-derive = "{PINNED["napi-derive"]}"
            napi-build = "{PINNED["napi-build"]}"

            [profile.release]
            codegen-units = 16
        """),
        "crates/core/Cargo.toml": _crate_toml(
            "demo-core",
            """
            description = "Text helpers shared by the CLI and the Node module"

            [dependencies]
        """,
        ),
        "crates/core/src/lib.rs": _text("""
            //! Text helpers shared by the CLI and the Node module.

            /// The workspace version.
            pub const VERSION: &str = env!("CARGO_PKG_VERSION");

            /// A greeting for `name`.
            pub fn greet(name: &str) -> String {
                format!("Hello, {name}!")
            }

            /// Lowercase ASCII letters and digits; every other run of characters becomes one dash.
            pub fn slugify(text: &str) -> String {
                let mut out = String::with_capacity(text.len());
                for c in text.chars() {
                    if c.is_ascii_alphanumeric() {
                        out.push(c.to_ascii_lowercase());
                    } else if !out.is_empty() && !out.ends_with('-') {
                        out.push('-');
                    }
                }
                while out.ends_with('-') {
                    out.pop();
                }
                out
            }

            #[cfg(test)]
            mod tests {
                use super::*;

                #[test]
                fn greets() {
                    assert_eq!(greet("world"), "Hello, world!");
                }

                #[test]
                fn slugifies() {
                    assert_eq!(slugify("  Hello, World! "), "hello-world");
                }
            }
        """),
        "crates/cli/Cargo.toml": _crate_toml(
            "demo-cli",
            """
            description = "The command line"

            [[bin]]
            name = "demo"
            path = "src/main.rs"

            [dependencies]
            demo-core.workspace = true
            clap.workspace = true
        """,
        ),
        "crates/cli/src/main.rs": _text("""
            use clap::{Parser, Subcommand};

            /// Greets and slugifies from the command line.
            #[derive(Parser)]
            #[command(name = "demo", version, about)]
            struct Cli {
                #[command(subcommand)]
                command: Command,
            }

            #[derive(Subcommand)]
            enum Command {
                /// Print a greeting.
                Greet { name: String },
                /// Print the slug of a text.
                Slug { text: String },
            }

            fn main() {
                match Cli::parse().command {
                    Command::Greet { name } => println!("{}", demo_core::greet(&name)),
                    Command::Slug { text } => println!("{}", demo_core::slugify(&text)),
                }
            }
        """),
        f"{native_dir}/Cargo.toml": _crate_toml(
            "demo-native",
            """
            description = "demo-core as a Node-API module, built by @napi-rs/cli"

            [lib]
            crate-type = ["cdylib"]

            [dependencies]
            demo-core.workspace = true
            napi.workspace = true
            napi-derive.workspace = true

            [build-dependencies]
            napi-build.workspace = true
        """,
        ),
        f"{native_dir}/build.rs": _text("""
            fn main() {
                napi_build::setup();
            }
        """),
        f"{native_dir}/src/lib.rs": _text("""
            //! demo-core exposed to Node through Node-API.

            use napi_derive::napi;

            /// The workspace version.
            #[napi]
            pub fn version() -> String {
                demo_core::VERSION.to_owned()
            }

            /// A greeting for `name`.
            #[napi]
            pub fn greet(name: String) -> String {
                demo_core::greet(&name)
            }

            /// The slug of `text`.
            #[napi]
            pub fn slugify(text: String) -> String {
                demo_core::slugify(&text)
            }
        """),
        f"{native_dir}/package.json": _json(native_manifest),
        # `napi build --platform` writes the loader and typings next to the .node file.
        f"{native_dir}/.gitignore": "# written by `napi build`\nindex.js\nindex.d.ts\n*.node\n",
    }
    return files, native_manifest


def _crates(native_dir: str) -> list[Package]:
    return [
        Package(name="demo-core", path=Path("crates/core"), manager="cargo"),
        Package(
            name="demo-cli", path=Path("crates/cli"), manager="cargo", depends_on=("demo-core",)
        ),
        Package(
            name="demo-native", path=Path(native_dir), manager="cargo", depends_on=("demo-core",)
        ),
    ]


def _native_outputs(native_dir: str) -> list[str]:
    return [
        f"{native_dir}/index.js",
        f"{native_dir}/index.d.ts",
        f"{native_dir}/demo-native.{_napi_platform()}.node",
    ]


def cargo_workspace(root: Path) -> Repo:
    """A Cargo workspace: demo-core (library), demo-cli (binary `demo`, clap) and demo-native
    (napi-rs cdylib in crates/native, with its own npm package @demo/native whose `build` is
    `napi build --platform --release`), with Cargo.lock and crates/native/package-lock.json."""
    native_dir = "crates/native"
    root.mkdir(parents=True, exist_ok=True)
    files, native_manifest = _cargo_files(native_dir)
    _write(root, {".gitignore": GITIGNORE, **files})
    lockfiles = _lock(root, _cargo_lock()) + _lock(root, _npm_lock(native_dir))
    native = _js_packages(
        "npm", {native_dir: native_manifest}, {native_dir: _native_outputs(native_dir)}
    )
    return Repo(
        root=root,
        package_manager="cargo",
        packages=(*_crates(native_dir), *native),
        lockfiles=tuple(lockfiles),
        tools={"cargo": _cargo_version(), "node": _node_version(), "npm": _npm_version()},
        install_command=("cargo", "fetch", "--locked"),
        build_command=("cargo", "build", "--workspace", "--locked"),
    )


# --- both -------------------------------------------------------------------------------------


def polyglot_repo(root: Path) -> Repo:
    """An npm workspace of three packages (tsc library, Vite + Svelte app, node CLI), and a
    Cargo workspace with a CLI and a napi-rs crate, in one repository.

    The napi package (crates/native) is a member of the npm workspace, as in napi-rs
    monorepos (rolldown, oxc, swc, rspack): one package-lock.json, one ``npm ci`` that also
    installs @napi-rs/cli, and JS packages can depend on the native module by version; here
    @demo/cli does, so a change to a Rust crate reaches a JS package through the graph.
    """
    native_dir = "crates/native"
    root.mkdir(parents=True, exist_ok=True)
    manifests, files = _npm_members(native=True)
    cargo_files, native_manifest = _cargo_files(native_dir)
    _write(
        root,
        {
            "package.json": _json(_npm_root_manifest(["packages/*", native_dir])),
            ".gitignore": GITIGNORE,
            **files,
            **cargo_files,
        },
    )
    lockfiles = _lock(root, _cargo_lock()) + _lock(root, _npm_lock())
    js = _js_packages(
        "npm",
        {**manifests, native_dir: native_manifest},
        {**_NPM_OUTPUTS, native_dir: _native_outputs(native_dir)},
    )
    return Repo(
        root=root,
        package_manager="npm",
        packages=(*js, *_crates(native_dir)),
        lockfiles=tuple(lockfiles),
        tools={"cargo": _cargo_version(), "node": _node_version(), "npm": _npm_version()},
        install_command=("npm", "ci"),
        build_command=("npm", "run", "build", "--workspaces", "--if-present"),
    )


# --- pnpm and Yarn ------------------------------------------------------------------------------


def _small_members(dep_spec: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """@demo/lib (tsc) and @demo/app (a node script that imports lib and writes dist/)."""
    lib = {
        "name": "@demo/lib",
        "version": "0.1.0",
        "private": True,
        "type": "module",
        "main": "dist/index.js",
        "types": "dist/index.d.ts",
        "exports": {".": {"types": "./dist/index.d.ts", "default": "./dist/index.js"}},
        "scripts": {"build": "tsc -p tsconfig.json"},
        "devDependencies": {"typescript": PINNED["typescript"]},
    }
    app = {
        "name": "@demo/app",
        "version": "0.1.0",
        "private": True,
        "type": "module",
        "scripts": {"build": "node build.js"},
        "dependencies": {"@demo/lib": dep_spec},
    }
    tsconfig = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "rootDir": "src",
            "outDir": "dist",
            "declaration": True,
            "strict": True,
            "skipLibCheck": True,
            "types": [],
        },
        "include": ["src"],
    }
    files = {
        "packages/lib/package.json": _json(lib),
        "packages/lib/tsconfig.json": _json(tsconfig),
        "packages/lib/src/index.ts": _text("""
            export function greet(name: string): string {
              return `Hello, ${name}!`
            }
        """),
        "packages/app/package.json": _json(app),
        "packages/app/build.js": _text("""
            // Writes dist/greeting.txt with a function of @demo/lib (so lib must be built first).
            import { mkdirSync, writeFileSync } from 'node:fs'
            import { greet } from '@demo/lib'

            mkdirSync('dist', { recursive: true })
            writeFileSync('dist/greeting.txt', greet('app') + '\\n')
        """),
    }
    return {"packages/lib": lib, "packages/app": app}, files


_SMALL_OUTPUTS = {"packages/lib": ["packages/lib/dist"], "packages/app": ["packages/app/dist"]}


def pnpm_workspace(root: Path, *, pnpm_version: str = PNPM_VERSION) -> Repo:
    """pnpm workspace (pnpm-workspace.yaml, "workspace:*" dependency) of @demo/lib and
    @demo/app, with pnpm-lock.yaml made by pnpm ``pnpm_version`` (installed from npm)."""
    root.mkdir(parents=True, exist_ok=True)
    manifests, files = _small_members("workspace:*")
    _write(
        root,
        {
            "package.json": _json(
                {
                    "name": "demo-pnpm",
                    "version": "0.0.0",
                    "private": True,
                    "packageManager": f"pnpm@{pnpm_version}",
                    "scripts": {"build": "pnpm -r run build"},
                }
            ),
            "pnpm-workspace.yaml": 'packages:\n  - "packages/*"\n',
            ".gitignore": GITIGNORE,
            **files,
        },
    )
    pnpm = pnpm_executable(pnpm_version)
    spec = _LockSpec(
        label="pnpm",
        cwd=".",
        manifests=("package.json", "pnpm-workspace.yaml", ".npmrc"),
        commands=(("{pnpm}", "install", "--no-frozen-lockfile"),),
        outputs=("pnpm-lock.yaml",),
        tools=(("node", _node_version()), ("pnpm", pnpm_version)),
    )
    lockfiles = _lock(root, spec)
    return Repo(
        root=root,
        package_manager="pnpm",
        packages=tuple(_js_packages("pnpm", manifests, _SMALL_OUTPUTS)),
        lockfiles=tuple(lockfiles),
        tools={"node": _node_version(), "pnpm": pnpm_version},
        install_command=(str(pnpm), "install", "--frozen-lockfile"),
        build_command=(str(pnpm), "-r", "run", "build"),
        path_dirs=(pnpm.parent,),
    )


YARN_GITIGNORE = GITIGNORE + _text("""
    .pnp.*
    .yarn/*
    !.yarn/patches
    !.yarn/plugins
    !.yarn/releases
    !.yarn/sdks
    !.yarn/versions
""")


def yarn_berry_workspace(root: Path, *, yarn_version: str = YARN_VERSION) -> Repo:
    """Yarn 4 workspaces of @demo/lib and @demo/app ("workspace:^"), with the release
    committed in .yarn/releases, .yarnrc.yml (yarnPath, nodeLinker: node-modules) and
    yarn.lock made by that release."""
    root.mkdir(parents=True, exist_ok=True)
    manifests, files = _small_members("workspace:^")
    release = f".yarn/releases/yarn-{yarn_version}.cjs"
    _write(
        root,
        {
            "package.json": _json(
                {
                    "name": "demo-yarn",
                    "version": "0.0.0",
                    "private": True,
                    "packageManager": f"yarn@{yarn_version}",
                    "workspaces": ["packages/*"],
                    "scripts": {"build": "yarn workspaces foreach --all --topological run build"},
                }
            ),
            ".yarnrc.yml": f"enableTelemetry: false\n\nnodeLinker: node-modules\n\n"
            f"yarnPath: {release}\n",
            ".gitignore": YARN_GITIGNORE,
            **files,
        },
    )
    (root / release).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(yarn_release(yarn_version), root / release)
    spec = _LockSpec(
        label="yarn",
        cwd=".",
        manifests=("package.json", ".yarnrc.yml"),
        commands=(("node", release, "install", "--mode=skip-build"),),
        outputs=("yarn.lock",),
        tools=(("node", _node_version()), ("yarn", yarn_version)),
        env=(("YARN_ENABLE_IMMUTABLE_INSTALLS", "false"),),
    )  # CI=true would make it immutable
    lockfiles = _lock(root, spec)
    return Repo(
        root=root,
        package_manager="yarn",
        packages=tuple(_js_packages("yarn", manifests, _SMALL_OUTPUTS)),
        lockfiles=tuple(lockfiles),
        tools={"node": _node_version(), "yarn": yarn_version},
        install_command=("node", release, "install", "--immutable"),
        build_command=(
            "node",
            release,
            "workspaces",
            "foreach",
            "--all",
            "--topological",
            "run",
            "build",
        ),
    )


# --- git --------------------------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
    )
    return env


def _git(root: Path, *args: str) -> str:
    return _run(["git", *args], root, _git_env()).strip()


def git_commit(root: Path, message: str, *, allow_empty: bool = False) -> str:
    """Commit everything in the work tree (``git add -A``); return the new commit's hash."""
    _git(root, "add", "-A")
    _git(
        root,
        "commit",
        "-q",
        "--no-verify",
        "-m",
        message,
        *(["--allow-empty"] if allow_empty else []),
    )
    return _git(root, "rev-parse", "HEAD")


def git_init(root: Path, *, message: str = "Initial commit", branch: str = "main") -> str:
    """Make ``root`` a git repository on ``branch`` with everything in one commit; the author
    is set in the repository's own config (no global config needed). Returns the commit hash."""
    _git(root, "init", "-q", "-b", branch)
    _git(root, "config", "user.name", "Buildlib Tests")
    _git(root, "config", "user.email", "tests@buildlib.invalid")
    _git(root, "config", "commit.gpgsign", "false")
    return git_commit(root, message)
