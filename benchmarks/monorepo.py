"""A synthetic npm-workspace monorepo (issue 17), built by buildlib and by turbo.

`generate(root, packages=N)` writes, from a seed:

- `package.json` with `"workspaces": ["packages/*"]` and `"packageManager"`;
- `package-lock.json`: the lockfile npm itself writes for this workspace
  (`npm install --package-lock-only` gives the same bytes; a test checks it on a
  small repo). turbo reads the package manager's lockfile to build its package
  graph; see `turbo_notes` below for what happens without one;
- `turbo.json`: `tasks.build` with `dependsOn ["^build"]`, `inputs ["src/**"]`,
  `outputs ["dist/**"]`;
- `build.toml`: one buildlib `[[step]]` per package (`node build.js` in the
  package, inputs `packages/<p>/src/**`, output `packages/<p>/dist`, `depends_on`
  the steps of its dependencies), one mode;
- `.gitignore` (dist, .turbo, .buildlib, node_modules);
- `packages/pNNNN/`: `package.json` (script `build` = `node build.js`,
  `dependencies` `{"pXXXX": "*"}` on 0..max_deps earlier packages, chosen
  uniformly), `build.js` (concatenates `src/*.js` into `dist/out.js`) and
  `src/m00.js ...` (small files).

No node_modules: `node build.js` needs nothing installed, and turbo finds the
workspace packages by globbing the `workspaces` patterns for `package.json` files;
it never looks at node_modules to resolve `"pXXXX": "*"` (a dependency whose name
is a workspace package's and whose range that package's version satisfies is an
internal edge of the graph).

`edit_middle(root, revision=k)` makes the "one edited file in the middle of the
graph" reproducible: it rewrites `src/m00.js` of the package at index N // 2 with
content that depends only on k, so revision k is the same edit in every copy of
the repo and two different revisions never collide in a cache.

turbo: `find_turbo()` returns the native binary of turbo `TURBO_VERSION` installed
from the npm registry into `~/.cache/buildlib-bench/turbo-<version>` (installed
the first time, found afterwards). See its docstring for the flags and environment.

Command line (see `python benchmarks/monorepo.py -h`):

    python benchmarks/monorepo.py generate DIR --packages 1000
    python benchmarks/monorepo.py measure --packages 100 200 1000
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

TURBO_VERSION = "2.11.11"  # the latest 2.x on the npm registry on 2026-11-30
TURBO_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "buildlib-bench"
# This machine's npm. turbo needs the field (without it: "Could not resolve workspace") and
# reads the name to pick its lockfile parser; it runs tasks with `npm run`.
PACKAGE_MANAGER = "npm@11.19.1"
MODE = "default"

BUILD_JS = """\
// Concatenate src/*.js into dist/out.js.
const fs = require("fs");
const path = require("path");
const src = path.join(__dirname, "src");
const names = fs.readdirSync(src).filter((n) => n.endsWith(".js")).sort();
const text = names.map((n) => fs.readFileSync(path.join(src, n), "utf8")).join("");
fs.mkdirSync(path.join(__dirname, "dist"), { recursive: true });
fs.writeFileSync(path.join(__dirname, "dist", "out.js"), text);
"""

GITIGNORE = "node_modules/\ndist/\n.turbo/\n.buildlib/\n"


@dataclass(frozen=True, kw_only=True)
class Monorepo:
    """What `generate` wrote: package names in declaration (topological) order and their deps."""

    root: Path
    names: tuple[str, ...]
    deps: Mapping[str, tuple[str, ...]]
    files_per_package: int

    @property
    def middle(self) -> str:
        """The package nearest index N // 2 (searching N//2, N//2+1, N//2-1, ...) that has at
        least one dependency and one dependent: an edit there is inside the graph, not at a
        leaf or a root. Falls back to index N // 2 when no package has both."""
        half = len(self.names) // 2
        has_dependent = {d for deps in self.deps.values() for d in deps}
        for offset in range(len(self.names)):
            for index in (half + offset, half - offset):
                if 0 <= index < len(self.names):
                    name = self.names[index]
                    if self.deps[name] and name in has_dependent:
                        return name
        return self.names[half]

    def dependents(self, name: str) -> set[str]:
        """Every package downstream of `name` (what re-runs when it changes), itself excluded."""
        down: set[str] = set()
        reached = {name}
        for other in self.names[self.names.index(name) + 1 :]:
            if reached.intersection(self.deps[other]):
                reached.add(other)
                down.add(other)
        return down


def package_names(packages: int) -> tuple[str, ...]:
    width = max(4, len(str(packages - 1)))
    return tuple(f"p{i:0{width}d}" for i in range(packages))


def random_deps(names: Sequence[str], *, max_deps: int, seed: int) -> dict[str, tuple[str, ...]]:
    """0..max_deps dependencies per package, uniformly among the packages declared before it."""
    rng = random.Random(seed)
    deps: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(names):
        count = rng.randint(0, min(max_deps, i))
        deps[name] = tuple(sorted(names[j] for j in rng.sample(range(i), count)))
    return deps


def _source(name: str, index: int, token: str) -> str:
    return f'// {name}/src/m{index:02d}.js\nexports.m{index:02d} = "{token}";\n'


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"  # JSON strings are TOML


def manifest_text(names: Sequence[str], deps: Mapping[str, Sequence[str]]) -> str:
    lines = [
        "[workspace]",
        'name = "monorepo"',
        f'default_mode = "{MODE}"',
        "",
        f"[modes.{MODE}]",
        "",
    ]
    for name in names:
        lines += [
            "[[step]]",
            f'name = "{name}"',
            'command = ["node", "build.js"]',
            f'cwd = "packages/{name}"',
            f"depends_on = {_toml_list(deps[name])}",
            f'inputs = ["packages/{name}/src/**"]',
            f'outputs = ["packages/{name}/dist"]',
            "",
        ]
    return "\n".join(lines)


def turbo_json() -> dict[str, object]:
    return {
        "$schema": "https://turborepo.com/schema.json",
        "tasks": {"build": {"dependsOn": ["^build"], "inputs": ["src/**"], "outputs": ["dist/**"]}},
    }


def _package_json(name: str, deps: Sequence[str]) -> dict[str, object]:
    package: dict[str, object] = {
        "name": name,
        "version": "1.0.0",
        "private": True,
        "scripts": {"build": "node build.js"},
    }
    if deps:
        package["dependencies"] = dict.fromkeys(deps, "*")
    return package


def lockfile(names: Sequence[str], deps: Mapping[str, Sequence[str]]) -> dict[str, object]:
    """package-lock.json (v3) as `npm install --package-lock-only` writes it for this workspace."""
    packages: dict[str, object] = {"": {"name": "monorepo", "workspaces": ["packages/*"]}}
    for name in sorted(names):  # npm sorts keys: node_modules/... before packages/...
        packages[f"node_modules/{name}"] = {"resolved": f"packages/{name}", "link": True}
    for name in sorted(names):
        entry: dict[str, object] = {"version": "1.0.0"}
        if deps[name]:
            entry["dependencies"] = dict.fromkeys(deps[name], "*")
        packages[f"packages/{name}"] = entry
    return {"name": "monorepo", "lockfileVersion": 3, "requires": True, "packages": packages}


def _dump(data: object) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def _write_package(root: str, name: str, deps: Sequence[str], files: int, seed: int) -> None:
    base = f"{root}/packages/{name}"
    os.makedirs(f"{base}/src")
    rng = random.Random(f"{seed}:{name}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    blobs = [
        (f"{base}/package.json", _dump(_package_json(name, deps))),
        (f"{base}/build.js", BUILD_JS.encode()),
    ]
    blobs += [
        (f"{base}/src/m{i:02d}.js", _source(name, i, rng.randbytes(12).hex()).encode())
        for i in range(files)
    ]
    for path, data in blobs:
        fd = os.open(path, flags, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def generate(
    root: Path,
    *,
    packages: int,
    files_per_package: int = 20,
    max_deps: int = 3,
    seed: int = 0,
    package_manager: str = PACKAGE_MANAGER,
    git: bool = False,
) -> Monorepo:
    """Write the monorepo into `root` (created; must not exist or be empty). Seeded: the same
    arguments give the same bytes. Files are written from 4 threads (creating a file is a
    system call that releases the GIL). With `git`, the tree is also committed to a new git
    repository (fixed author and dates, so the same commit id every time)."""
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    names = package_names(packages)
    deps = random_deps(names, max_deps=max_deps, seed=seed)
    top = {
        "name": "monorepo",
        "private": True,
        "workspaces": ["packages/*"],
        "packageManager": package_manager,
    }
    (root / "package.json").write_bytes(_dump(top))
    (root / "package-lock.json").write_bytes(_dump(lockfile(names, deps)))
    (root / "turbo.json").write_bytes(_dump(turbo_json()))
    (root / "build.toml").write_text(manifest_text(names, deps), encoding="utf-8")
    (root / ".gitignore").write_text(GITIGNORE)
    (root / "packages").mkdir()
    with ThreadPoolExecutor(4) as pool:
        for future in [
            pool.submit(_write_package, str(root), n, deps[n], files_per_package, seed)
            for n in names
        ]:
            future.result()
    if git:
        commit_all(root)
    return Monorepo(root=root, names=names, deps=deps, files_per_package=files_per_package)


def commit_all(root: Path) -> None:
    """`git init` + commit everything, reproducibly (fixed identity and dates, no hooks)."""
    stamp = "2026-01-01T00:00:00+0000"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
    }
    for argv in (
        ["git", "init", "-q", "-b", "main", "."],
        ["git", "add", "-A"],
        ["git", "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "generated"],
    ):
        subprocess.run(argv, cwd=root, env=env, check=True, stdin=subprocess.DEVNULL)


def load(root: Path) -> Monorepo:
    """The Monorepo record of a tree `generate` wrote (from its package.json files)."""
    names = tuple(sorted(p.name for p in (root / "packages").iterdir()))
    deps = {
        n: tuple(
            sorted(
                json.loads((root / "packages" / n / "package.json").read_text()).get(
                    "dependencies", {}
                )
            )
        )
        for n in names
    }
    files = len(list((root / "packages" / names[0] / "src").iterdir()))
    return Monorepo(root=root, names=names, deps=deps, files_per_package=files)


def last_revision(repo: Monorepo) -> int:
    """The revision `edit_middle` last applied to `repo` (0: never edited)."""
    text = (repo.root / "packages" / repo.middle / "src" / "m00.js").read_text()
    found = re.search(r"^// edit (\d+)$", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def edit_middle(repo: Monorepo, revision: int) -> Path:
    """Rewrite one source file of the middle package (index N // 2) for `revision` (>= 1).

    The new text depends only on `revision`, so the edit is reproducible, and a
    revision never brings back earlier contents: neither tool can restore it from
    its cache. Returns the edited file.
    """
    path = repo.root / "packages" / repo.middle / "src" / "m00.js"
    token = hashlib.sha256(f"{repo.middle}:{revision}".encode()).hexdigest()[:24]
    path.write_text(_source(repo.middle, 0, token) + f"// edit {revision}\n")
    return path


# --- turbo -------------------------------------------------------------------------------

TURBO_ENV = {
    "TURBO_TELEMETRY_DISABLED": "1",  # no telemetry (turbo's own switch)
    "DO_NOT_TRACK": "1",  # the cross-tool one, which turbo also honours
    "TURBO_NO_UPDATE_NOTIFIER": "1",  # no registry request for a newer version
}
# `turbo run` flags every timed run uses: no task logs replayed (they would be the same
# lines for both tools, but turbo prints a cached task's log from its cache unless told
# not to) and the plain streaming UI (the TUI needs a terminal).
TURBO_RUN_FLAGS = ("--output-logs=none", "--ui=stream")


def _turbo_platform_package() -> str:
    import platform

    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "windows"}[platform.system()]
    arch = {"x86_64": "64", "AMD64": "64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
    return f"@turbo/{system}-{arch}"


def find_turbo(version: str = TURBO_VERSION, *, home: Path = TURBO_HOME) -> Path:
    """turbo's native binary, `version`, installed from the npm registry if it is not there yet.

    Installed with `npm install --save-exact turbo@<version>` into
    `~/.cache/buildlib-bench/turbo-<version>/` (outside any repository; a temporary
    directory renamed into place, so a half-done install is never found), and found
    there afterwards: idempotent, and the network is used once.

    What runs is the platform package's binary
    (`node_modules/@turbo/linux-64/bin/turbo`), not `node_modules/.bin/turbo`: the
    latter is a Node script that finds and spawns the same binary, ~40-60 ms of Node
    start-up per run that is not turbo's own work. Run from outside the repository,
    turbo warns "No locally installed `turbo` found ... Using globally installed
    version", which changes nothing else.

    How it is run (`turbo_argv`, `turbo_env`): `TURBO_TELEMETRY_DISABLED=1`,
    `DO_NOT_TRACK=1`, `TURBO_NO_UPDATE_NOTIFIER=1`; no daemon flag: since 2.x's
    daemon changes `turbo run` no longer uses the daemon at all (`--daemon` and
    `--no-daemon` are listed as "[DEPRECATED] The daemon is no longer used for
    `turbo run`" in 2.11's `turbo run --help`), so every run is a cold process, like
    buildlib's. The local cache is the default `.turbo/cache` in the repository; no
    remote cache is configured. A cache hit does not rewrite outputs that are intact
    (their ctime stays the same).
    """
    prefix = home / f"turbo-{version}"
    binary = prefix / "node_modules" / _turbo_platform_package() / "bin" / "turbo"
    if binary.is_file() and _turbo_version(binary) == version:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH: it is needed once, to install turbo")
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".turbo-{version}-", dir=home))
    try:
        (staging / "package.json").write_text('{"private": true}\n')
        subprocess.run(
            [
                npm,
                "install",
                "--save-exact",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                f"turbo@{version}",
            ],
            cwd=staging,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        staged = staging / binary.relative_to(prefix)
        if not staged.is_file() or _turbo_version(staged) != version:
            raise RuntimeError(f"npm install turbo@{version} did not give {staged}")
        shutil.rmtree(prefix, ignore_errors=True)
        try:
            staging.rename(prefix)
        except OSError:  # another process installed it meanwhile
            if not (binary.is_file() and _turbo_version(binary) == version):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return binary


def _turbo_version(binary: Path) -> str:
    result = subprocess.run(
        [str(binary), "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, **TURBO_ENV},
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def turbo_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without TURBO_* settings, plus `TURBO_ENV`."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith("TURBO_")
    }
    return env | TURBO_ENV


def turbo_argv(binary: Path, *extra: str) -> list[str]:
    return [str(binary), "run", "build", *TURBO_RUN_FLAGS, *extra]


# --- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="benchmarks/monorepo.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a monorepo into DIR")
    gen.add_argument("dir", type=Path)
    gen.add_argument("--packages", type=int, required=True)
    gen.add_argument("--files-per-package", type=int, default=20)
    gen.add_argument("--max-deps", type=int, default=3)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--git", action="store_true", help="also commit it to a new git repository")
    edit = sub.add_parser("edit", help="apply edit REVISION to the middle package of DIR")
    edit.add_argument("dir", type=Path)
    edit.add_argument("revision", type=int)
    sub.add_parser("turbo", help="print the path of turbo's binary (installing it if needed)")
    sub.add_parser("measure", add_help=False, help="the benchmark: see `measure -h`")
    sub.add_parser("profile", add_help=False, help="cProfile of a no-op: see `profile -h`")
    args, rest = parser.parse_known_args(argv)
    if args.command in ("measure", "profile"):
        from benchmarks import monorepo_measure

        return monorepo_measure.main([args.command, *rest])
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "generate":
        start = time.perf_counter()
        repo = generate(
            args.dir,
            packages=args.packages,
            files_per_package=args.files_per_package,
            max_deps=args.max_deps,
            seed=args.seed,
            git=args.git,
        )
        print(
            f"{args.dir}: {len(repo.names)} packages in {time.perf_counter() - start:.1f}s; "
            f"middle package {repo.middle} ({len(repo.dependents(repo.middle))} dependents)"
        )
    elif args.command == "edit":
        repo = load(args.dir)
        print(edit_middle(repo, args.revision))
    elif args.command == "turbo":
        print(find_turbo())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/...`
    sys.exit(main())
