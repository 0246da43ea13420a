"""Which package.json scripts are build steps: the ones that build, check or test.

`buildlib init` makes one step per such script and says, for every other script, why it
made none. The rules, first match wins (docs/adopting.md lists them for users):

1. npm's lifecycle scripts (install, prepare, prepublishOnly, version...) and pre/post
   hooks of another script: the package manager runs them itself.
2. At a workspace root, scripts that run the packages' scripts (`npm run build
   --workspaces`, `pnpm -r build`, `yarn workspaces foreach`), and anywhere, another task
   runner (turbo, nx, lerna): the packages' scripts are steps of their own.
3. Dev servers, watchers and the program itself (dev, start, serve, preview, watch,
   `--watch`, a bare `vite`): they never finish.
4. Scripts that rewrite the sources (format, `--fix`, `--write`): a step must not write its
   own inputs. Cleaning (buildlib clean does it from the declared outputs), releasing and
   deploying are not part of a build either.
5. npm's placeholder test (`echo "Error: no test specified" && exit 1`), and end-to-end
   tests (e2e, playwright, cypress), which need a running app or browsers.
6. By name: build, compile, bundle (and `build:x` when there is no plain `build`) build;
   check, typecheck, lint, `x:check`... check; test, `test:x`... test. A `role:variant`
   script next to the plain `role` script is a variant of it and gets no step.
7. A check or test that another chosen script runs (`"build": "npm run typecheck && vite
   build"`) is covered by that script's step.
Anything else is not recognisable by its name and gets no step.
"""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Callable, Mapping, Sequence

from buildlib.core.records import record


class Role(enum.Enum):
    BUILD = "build"
    CHECK = "check"
    TEST = "test"


@record
class ScriptChoice:
    script: str
    command: str
    role: Role | None  # None: no step, for `reason`
    reason: str


LIFECYCLE = frozenset(
    {
        "preinstall",
        "install",
        "postinstall",
        "preuninstall",
        "uninstall",
        "postuninstall",
        "prepare",
        "prepublish",
        "prepublishOnly",
        "prepack",
        "postpack",
        "publish",
        "postpublish",
        "preversion",
        "version",
        "postversion",
        "dependencies",
    }
)
BUILD_NAMES = frozenset({"build", "compile", "bundle"})
CHECK_NAMES = frozenset(
    {"check", "typecheck", "type-check", "tsc", "lint", "eslint", "stylelint", "svelte-check"}
)
TEST_NAMES = frozenset({"test", "tests", "unit", "spec"})
LONG_RUNNING_NAMES = frozenset(
    {"dev", "start", "serve", "preview", "watch", "storybook", "develop"}
)
REWRITING_NAMES = frozenset({"format", "fmt", "prettier", "fix"})
RELEASE_PREFIXES = ("release", "deploy", "publish", "changeset", "semantic-release")
PACKAGE_MANAGERS = frozenset({"npm", "pnpm", "yarn", "bun"})
TASK_RUNNERS = frozenset({"turbo", "nx", "lerna", "wireit", "ultra"})
E2E_TOOLS = frozenset({"playwright", "cypress", "wdio", "detox", "testcafe"})
# First words that only start a server, a watcher or the app itself.
SERVERS = frozenset(
    {
        "nodemon",
        "webpack-dev-server",
        "http-server",
        "live-server",
        "electron",
        "serve",
        "ts-node-dev",
        "browser-sync",
    }
)
# `<tool> <subcommand>` pairs that never finish.
SERVER_SUBCOMMANDS = frozenset(
    {
        ("vite", "dev"),
        ("vite", "serve"),
        ("vite", "preview"),
        ("next", "dev"),
        ("next", "start"),
        ("nuxt", "dev"),
        ("astro", "dev"),
        ("astro", "preview"),
        ("webpack", "serve"),
        ("remix", "dev"),
        ("svelte-kit", "dev"),
    }
)
# Words that put the command in front of the real one.
_PREFIXES = frozenset(
    {
        "npx",
        "pnpx",
        "bunx",
        "exec",
        "dlx",
        "cross-env",
        "env",
        "dotenv",
        "--",
        "--no",
        "--yes",
        "-y",
        "--no-install",
    }
)
_OPERATORS = re.compile(r"&&|\|\||;|\|")
_NPM_PLACEHOLDER = "Error: no test specified"


def command_segments(command: str) -> list[list[str]]:
    """A script's commands (split at `&&`, `||`, `;`, `|`) as word lists, each from the word
    that names the program: `cross-env NODE_ENV=x npx vite build` -> ["vite", "build"]."""
    segments = []
    for part in _OPERATORS.split(command):
        try:
            words = shlex.split(part)
        except ValueError:  # an unbalanced quote: the plain words are good enough here
            words = part.split()
        while words and (
            words[0] in _PREFIXES or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])
        ):
            words = words[1:]
        if (
            words[:1] in (["pnpm"], ["yarn"], ["bun"])
            and len(words) > 1
            and words[1] in ("exec", "dlx")
        ):
            words = words[2:]
        if words:
            segments.append(words)
    return segments


def classify(scripts: Mapping[str, str], *, workspace_root: bool = False) -> list[ScriptChoice]:
    """Every script of one package.json, in file order, with its role or why it has none.
    `workspace_root`: the package is the root of a workspace of several packages."""
    choices = [
        _classify(
            _Script(name=name, command=command, scripts=scripts, workspace_root=workspace_root)
        )
        for name, command in scripts.items()
    ]
    return _drop_covered(choices)


@record
class _Script:
    name: str
    command: str
    scripts: Mapping[str, str]  # the package's others
    workspace_root: bool

    @property
    def base(self) -> str:
        """ "build:debug" -> "build"."""
        return self.name.split(":", 1)[0]

    @property
    def segments(self) -> list[list[str]]:
        return command_segments(self.command)


def _classify(script: _Script) -> ScriptChoice:
    for rule in _SKIP_RULES:
        reason = rule(script)
        if reason:
            return ScriptChoice(
                script=script.name, command=script.command, role=None, reason=reason
            )
    role = _role_by_name(script.name, script.base)
    if role is None:
        reason = "not a build, check or test by its name: add a step by hand if it is one"
    elif script.name != script.base and script.base in script.scripts:
        role, reason = None, f"a variant of '{script.base}', whose step runs the plain script"
    else:
        reason = f"a {role.value} script by its name"
    return ScriptChoice(script=script.name, command=script.command, role=role, reason=reason)


def _lifecycle(script: _Script) -> str:
    if script.name in LIFECYCLE:
        return "a lifecycle script: the package manager runs it itself (install, publish, version)"
    for prefix, when in (("pre", "before"), ("post", "after")):
        hooked = script.name.removeprefix(prefix)
        if hooked != script.name and hooked in script.scripts:
            return (
                f"npm runs it {when} '{hooked}' (pnpm and Yarn 2+ do not: fold it into "
                f"'{hooked}' if they run it)"
            )
    return ""


def _task_runner(script: _Script) -> str:
    """Why the script only runs other scripts, or ""."""
    for words in script.segments:
        if words[0] in TASK_RUNNERS:
            return (
                f"runs {words[0]}, another task runner: its tasks are steps here "
                "(docs/adopting.md maps turbo.json)"
            )
        if not script.workspace_root or words[0] not in PACKAGE_MANAGERS:
            continue
        flags = set(words[1:])
        if (
            (words[0] == "npm" and flags & {"--workspaces", "-ws", "--workspace", "-w"})
            or (words[0] == "pnpm" and flags & {"-r", "--recursive", "--filter", "-F"})
            or (words[0] == "yarn" and words[1:3] == ["workspaces", "foreach"])
        ):
            return "runs the workspace packages' scripts, which are steps of their own"
    return ""


def _long_running(script: _Script) -> str:
    named = script.base in LONG_RUNNING_NAMES or script.name.endswith(
        (":dev", ":watch", ":serve", ":start")
    )
    if named or any(_never_ends(words) for words in script.segments):
        return "a dev server, watcher or the program itself: it never finishes"
    return ""


def _never_ends(words: Sequence[str]) -> bool:
    tool, sub = words[0], words[1:2]
    return (
        "--watch" in words
        or tool in SERVERS
        or (tool in ("tsc", "napi", "rollup", "esbuild", "tsup") and "-w" in words)
        or (tool == "vite" and (not sub or sub[0].startswith("-")))  # bare vite: dev server
        or tuple(words[:2]) in SERVER_SUBCOMMANDS
        or (tool in ("jest", "vitest") and ("--watchAll" in words or sub in (["watch"], ["dev"])))
    )


def _rewrites(script: _Script) -> str:
    if script.name.endswith(":check") or any("--check" in words for words in script.segments):
        return ""  # format:check, prettier --check: a check of the formatting
    if (
        script.base in REWRITING_NAMES
        or script.name.endswith((":fix", ":write", ":format"))
        or any(f in words for words in script.segments for f in ("--write", "--fix"))
    ):
        return "rewrites the sources: a step must not write its own inputs"
    return ""


def _not_building(script: _Script) -> str:
    if script.base.startswith("clean"):
        return "deletes build outputs: `buildlib clean` removes the declared ones"
    if script.base.startswith(RELEASE_PREFIXES):
        return "releases or deploys: not part of a build"
    if _NPM_PLACEHOLDER in script.command:
        return "npm's placeholder test, which always fails"
    if "e2e" in script.name or any(words[0] in E2E_TOOLS for words in script.segments):
        return (
            "end-to-end tests need a running app or browsers: add a step by hand once "
            "they run unattended"
        )
    return ""


_SKIP_RULES: tuple[Callable[[_Script], str], ...] = (
    _lifecycle,
    _task_runner,
    _long_running,
    _rewrites,
    _not_building,
)


def _role_by_name(name: str, base: str) -> Role | None:
    if base in BUILD_NAMES:
        return Role.BUILD
    if base in CHECK_NAMES or name.endswith(":check"):
        return Role.CHECK
    if base in TEST_NAMES:
        return Role.TEST
    return None


def _runs(command: str, script: str) -> bool:
    """Whether `command` runs the package script `script` (`npm run x`, `pnpm x`,
    `yarn run x`, `run-s x`, `npm-run-all x*`)."""
    for words in command_segments(command):
        if words[0] in PACKAGE_MANAGERS:
            rest = words[1:]
            if rest[:1] in (["run"], ["run-script"]):
                rest = rest[1:]
            if rest[:1] == [script]:
                return True
        elif words[0] in ("run-s", "run-p", "npm-run-all"):
            import fnmatch

            if any(fnmatch.fnmatchcase(script, w) for w in words[1:] if not w.startswith("-")):
                return True
    return False


def _drop_covered(choices: list[ScriptChoice]) -> list[ScriptChoice]:
    """Rule 7: a check or test that another chosen script runs gets no step of its own."""
    chosen = [c for c in choices if c.role is not None]
    result = []
    for choice in choices:
        runner = next(
            (c for c in chosen if c is not choice and _runs(c.command, choice.script)), None
        )
        result.append(
            choice
            if choice.role not in (Role.CHECK, Role.TEST) or runner is None
            else ScriptChoice(
                script=choice.script,
                command=choice.command,
                role=None,
                reason=f"'{runner.script}' runs it, so its step covers it",
            )
        )
    return result
