"""Load and validate the manifest (`build.toml`): the project's whole build graph as data.

`load_manifest` either returns a fully checked `Manifest` or raises one `ManifestError`
naming the file, the step, the key and the fix; nothing runs before it succeeds.
Templates are only checked for syntax here; they are filled by `plan.py`.

`version = 2` (the default for manifests `buildlib init` writes): a step's inputs,
outputs, exclude and clean are relative to its `cwd`, and `//path` names a path from
the workspace root; the plan joins them once templates are filled. Without `version`
(version 1) they are relative to the root, as they always were, so older manifests keep
their meaning. A manifest without `[modes]` has one implicit mode, `default`.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buildlib.core import marshalfile
from buildlib.core.engine import derived_key, derived_keys, identity
from buildlib.core.errors import CycleError, ManifestError
from buildlib.core.globs import normal_path
from buildlib.core.graph import find_cycle
from buildlib.core.layout import BuildDir
from buildlib.core.localkey import user_key
from buildlib.core.records import field, fields, record, replace, restore
from buildlib.ecosystems.defaults import DEFAULT_EXCLUDES
from buildlib.workspace.artifacts import ArtifactKind
from buildlib.workspace.targets import TARGETS

if TYPE_CHECKING:  # packaging.markers costs ~20 ms to import; only `when` keys need it
    from packaging.markers import Marker

MANIFEST_NAME = "build.toml"
# A step names its log file (`<name>.log`) and nox sessions: kept well under the 255
# bytes a file name can have.
STEP_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
# A mode names files and directories (`.buildlib/logs/<mode>-<target>/`) and nox
# sessions: no separator, no leading dot (so never `..`).
MODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([a-z_][a-z0-9_]*)\}|[{}]")
MODE_NAMES_HINT = "development, production, test"
VERSIONS = (1, 2)
IMPLICIT_MODE = "default"  # the one mode of a manifest without [modes]
ROOT_PREFIX = "//"  # in a version 2 path: from the workspace root, not the step's cwd
STORES = ("archive", "local")  # how an output may be stored (see docs/cache.md)


@record
class Override:
    """Per-mode or per-target additions: `args` appended to the command, `env` merged."""

    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    tools: tuple[str, ...] = ()  # more tools fingerprinted for this mode or target


@record
class StepSpec:
    name: str
    description: str
    group: str
    command: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]
    env_inputs: tuple[str, ...]
    depends_on: tuple[str, ...]
    inputs: tuple[str, ...]
    exclude: tuple[str, ...]
    outputs: tuple[str, ...]
    clean: tuple[str, ...]  # extra paths `clean` removes (intermediate directories)
    tools: tuple[str, ...]
    retries: int
    when: Marker | None
    # `when` as written: what is remembered, since packaging's str() of a marker does
    # not always parse back to the same marker (packaging 24 quotes every value with ").
    when_text: str | None = field(default=None, compare=False)
    modes: tuple[str, ...] | None
    cache: bool
    mode_overrides: Mapping[str, Override]
    target_overrides: Mapping[str, Override]
    script: str | None = None  # a package.json script run by the package manager
    store: Mapping[str, str] = field(default_factory=dict)  # output -> "archive" | "local"
    inputs_declared: bool = True  # False: version 2 takes the files git knows under cwd
    # A service (docs/watch.md): started by `watch` once its dependencies are built and
    # kept running, never by a build; restarted when a `restart_on` file changes, and
    # after a dependency's outputs change only with `restart_on_deps`.
    service: bool = False
    restart_on: tuple[str, ...] = ()
    restart_on_deps: bool = False
    # The [[step]] table's text and what its validation read besides (version, the
    # names of modes and tools), as derived_key names them: equal origins mean equal
    # steps, so a plan remembers each step's filled fields under it. "": read from a
    # text that could not be cut in pieces (workspace/pieces.py), or not from a file.
    origin: str = field(default="", compare=False)


@record
class ModeSpec:
    name: str
    vars: Mapping[str, str]
    env: Mapping[str, str]


@record
class ArtifactSpec:
    path: str
    step: str
    kind: ArtifactKind
    run: tuple[str, ...]
    expect: str
    modes: tuple[str, ...] | None


@record
class CacheSettings:
    remote: str = ""
    remote_read_only: bool = False
    remote_header_env: str = ""
    trusted_keys: tuple[str, ...] = ()  # public keys whose signatures make a remote entry usable


@record
class Manifest:
    path: Path
    root: Path
    name: str
    default_mode: str
    vars: Mapping[str, str]
    tools: Mapping[str, tuple[str, ...]]
    modes: Mapping[str, ModeSpec]
    steps: Mapping[str, StepSpec]  # in file order
    artifacts: tuple[ArtifactSpec, ...]
    cache: CacheSettings
    exclude: tuple[str, ...] = DEFAULT_EXCLUDES  # never an input of any step
    version: int = 1  # 2: a step's paths are relative to its cwd
    package_manager: str = ""  # npm, pnpm or yarn for `script` steps; "" = detected
    # What results derived from this manifest (plans) are remembered under in .buildlib/:
    # a digest of the engine, the path and the text ("": a manifest not read from a
    # file), and whether this command may write them (`load_manifest(remember=...)`).
    remembered_as: str = field(default="", compare=False)
    remember: bool = field(default=False, compare=False)

    @property
    def deps(self) -> dict[str, tuple[str, ...]]:
        return {name: step.depends_on for name, step in self.steps.items()}


TOP_KEYS = ("version", "workspace", "vars", "tools", "modes", "cache", "step", "artifact")
WORKSPACE_KEYS = ("name", "default_mode", "exclude", "package_manager")
MODE_KEYS = ("vars", "env")
CACHE_KEYS = ("remote", "remote_read_only", "remote_header_env", "trusted_keys")
OVERRIDE_KEYS = ("args", "env", "tools")
STEP_KEYS = (
    "name",
    "description",
    "group",
    "command",
    "cwd",
    "env",
    "env_inputs",
    "depends_on",
    "inputs",
    "exclude",
    "outputs",
    "clean",
    "tools",
    "retries",
    "when",
    "modes",
    "cache",
    "mode",
    "target",
    "script",
    "service",
    "restart_on",
    "restart_on_deps",
)
SERVICE_KEYS = ("restart_on", "restart_on_deps")  # meaningful only with service = true
ARTIFACT_KEYS = ("path", "step", "kind", "run", "expect", "modes")
# Where a key found in the wrong table belongs: a header left out above it puts
# `name = ...` in the manifest's top level, or a step's keys in the mode table before it.
_HOMES = {"[workspace]": WORKSPACE_KEYS, "[[step]]": STEP_KEYS, "[cache]": CACHE_KEYS}


class _Checker:
    """Reads typed values out of raw TOML tables, raising ManifestError with full context."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(
        self, message: str, *, step: str | None = None, key: str | None = None, fix: str = ""
    ) -> ManifestError:
        return ManifestError(message, file=self.path, step=step, key=key, fix=fix)

    def known_keys(
        self,
        table: Mapping[str, Any],
        allowed: tuple[str, ...],
        *,
        where: str,
        step: str | None = None,
    ) -> None:
        for key in table:
            if key not in allowed:
                import difflib  # error paths only

                strays = [k for k in table if k not in allowed]
                homes = sorted(  # the table holding most of the strays first
                    (title for title, keys in _HOMES.items() if key in keys and title != where),
                    key=lambda title: -sum(k in _HOMES[title] for k in strays),
                )
                if homes:
                    raise self.error(
                        f"a key of {' or '.join(homes)} found in {where}",
                        step=step,
                        key=key,
                        fix=f"is the {homes[0]} header missing on the line above it? "
                        f"Keys belong to the last header before them; {where} takes: "
                        + ", ".join(allowed),
                    )
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else "allowed: " + ", ".join(allowed)
                raise self.error(
                    f"unknown key in {where}",
                    step=step,
                    key=key,
                    fix=f"remove it or rename it; {hint}",
                )

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        default: str | None = None,
        *,
        step: str | None = None,
        template: bool = True,
    ) -> str:
        if key not in table:
            if default is None:
                raise self.error(
                    "missing required key", step=step, key=key, fix=f'add {key} = "..."'
                )
            return default
        value = table[key]
        if not isinstance(value, str):
            raise self.error(
                f"expected a string, got {_type_name(value)}",
                step=step,
                key=key,
                fix=f'write it as {key} = "..."',
            )
        if template:
            self.template(value, step=step, key=key)
        return value

    def strings(
        self, table: Mapping[str, Any], key: str, *, step: str | None = None, template: bool = True
    ) -> tuple[str, ...]:
        if key not in table:
            return ()  # most keys of most steps are absent: no checks to run on them
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(
                f"expected a list of strings, got {_type_name(value)}",
                step=step,
                key=key,
                fix=f'write it as {key} = ["...", "..."] (an argv list, not a shell string)'
                if key in ("command", "args", "run")
                else f'write it as {key} = ["...", "..."]',
            )
        if key in ("command", "args", "run") and any("\0" in item for item in value):
            raise self.error(
                "an argument contains a NUL character, which no program's argument can hold",
                step=step,
                key=key,
                fix="remove the NUL (\\u0000)",
            )
        if template:
            for item in value:
                self.template(item, step=step, key=key)
        return tuple(value)

    def string_map(
        self,
        table: Mapping[str, Any],
        key: str,
        *,
        step: str | None = None,
        label: str | None = None,
    ) -> dict[str, str]:
        """`label`: how errors name the key (default `key`), e.g. `modes.test.env`."""
        if key not in table:
            return {}
        value = table[key]
        if not isinstance(value, dict):
            raise self.error(
                f"expected a table of strings, got {_type_name(value)}",
                step=step,
                key=key,
                fix=f'write it as {key} = {{ NAME = "value" }}',
            )
        label = label or key
        for name, item in value.items():
            if not isinstance(item, str):
                raise self.error(
                    f"value of '{name}' must be a string, got {_type_name(item)}",
                    step=step,
                    key=f"{label}.{name}",
                    fix=f'quote it: {name} = "{item}"',
                )
            if key == "env":
                self.env_name(name, step=step, key=f"{label}.{name}")
                if "\0" in item:
                    raise self.error(
                        "the value contains a NUL character, which no "
                        "environment variable can hold",
                        step=step,
                        key=f"{label}.{name}",
                        fix="remove the NUL (\\u0000)",
                    )
            self.template(item, step=step, key=f"{label}.{name}")
        return dict(value)

    def env_name(self, name: str, *, step: str | None, key: str) -> None:
        """An environment variable's name: not empty, no '=' (it ends the name in the
        environment block, so the variable would be another one) and no NUL."""
        if not name or "=" in name or "\0" in name:
            what = (
                "is empty"
                if not name
                else ("contains '='" if "=" in name else "contains a NUL character")
            )
            suggestion = name.replace("=", "_").replace("\0", "") or "NAME"
            raise self.error(
                f"environment variable name {name!r} {what}, which no environment can hold",
                step=step,
                key=key,
                fix=f"rename it, e.g. {suggestion!r}; to pass 'NAME=value', write NAME = \"value\"",
            )

    def boolean(
        self, table: Mapping[str, Any], key: str, default: bool, *, step: str | None = None
    ) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(
                f"expected true or false, got {_type_name(value)}",
                step=step,
                key=key,
                fix=f"write {key} = true or {key} = false",
            )
        return value

    def template(self, text: str, *, step: str | None, key: str) -> None:
        if "{" not in text and "}" not in text:
            return  # most strings hold no template: no regex pass for them
        for match in TEMPLATE_TOKEN.finditer(text):
            token = match.group(0)
            if token in ("{", "}"):
                raise self.error(
                    f"stray '{token}' in template {text!r}",
                    step=step,
                    key=key,
                    fix="use {name} for a variable and {{ or }} for a literal brace",
                )

    def relative_path(
        self, pattern: str, *, step: str | None, key: str, cwd_relative: bool = False
    ) -> None:
        """Outputs and inputs must stay inside the workspace, and be names a file can have.

        `cwd_relative` (a version 2 step's paths): `//path` names a path from the root, and
        `..` may climb out of the step's directory (the plan checks that the joined path
        stays inside the workspace)."""
        climbs_ok = False
        if cwd_relative:
            if pattern.startswith(ROOT_PREFIX):
                pattern = pattern[len(ROOT_PREFIX) :]
            else:
                climbs_ok = True  # `..` from the cwd: the plan checks the joined path
        if "\0" in pattern:
            raise self.error(
                f"path {pattern!r} contains a NUL character, which no file name can hold",
                step=step,
                key=key,
                fix="remove the NUL (\\u0000)",
            )
        if (
            pattern.startswith(("/", "\\"))
            or (pattern[:1].isalpha() and pattern[1:2] == ":")
            or (not climbs_ok and ".." in pattern and ".." in pattern.replace("\\", "/").split("/"))
        ):
            raise self.error(
                f"path {pattern!r} is outside the workspace",
                step=step,
                key=key,
                fix="use a path relative to the workspace root, without '..'",
            )


def _type_name(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
        float: "a number",
    }.get(type(value), type(value).__name__)


def find_manifest(start: Path) -> Path:
    """The nearest build.toml at or above `start`."""
    for directory in (start, *start.parents):
        candidate = directory / MANIFEST_NAME
        if candidate.is_file():
            return candidate
    raise ManifestError(
        "no build.toml found here or in any parent directory",
        file=start,
        fix="run from the workspace root or pass --manifest PATH",
    )


_VALIDATED_HEADER = b"buildlib-validated-manifest-2\n"


def load_manifest(path: Path, *, remember: bool = False) -> Manifest:
    """Parse and validate `path`; raise ManifestError for the first problem found.

    `.buildlib/` remembers the manifest this engine last validated at this path, with
    its text (core/engine.py names the engine). For the same text it is used again: the
    validation that reads the file system (each cwd is a directory) runs every time, the
    rest is decided by the text and the engine alone. For an edited text, each step whose
    [[step]] table kept its text, and whose validation reads the same version, modes and
    tools, is taken from it; the rest of the text is parsed and validated
    (workspace/pieces.py says when a text can be read in pieces, and why that is sound).
    With `remember`, the result is stored for the next reader. The file is signed with
    this user's key (core/localkey.py): without one, nothing is remembered.
    """
    try:
        path = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before 3.13)
        raise ManifestError(
            f"cannot be found: {exc}", file=path, fix="pass --manifest PATH to a file"
        ) from None
    check = _Checker(path)
    try:
        # A regular file only: a FIFO would block, /dev/zero never end.
        if not stat.S_ISREG(path.stat().st_mode):
            raise check.error("not a file", fix="pass --manifest PATH to a build.toml file")
        source = path.read_bytes()
    except FileNotFoundError:
        raise check.error("file not found", fix="create it or pass --manifest PATH") from None
    except OSError as exc:
        raise check.error(
            f"cannot be read: {exc.strerror or exc}", fix="check its permissions"
        ) from None
    build_dir = BuildDir(path.parent)
    key, engine = user_key(), identity()
    remember = remember and build_dir.is_own()
    if not (key and engine):
        return _validate(check, path, _parse(check, source))
    validated_by = (engine, os.fspath(path))
    last = _last_validated(build_dir, key, validated_by)
    manifest = _recall(last, source, path)
    if manifest is not None:
        _check_directories(check, manifest.steps, version=manifest.version)
    else:
        known = _known_steps(last)
        # Parsed in pieces, the text costs ~30% more than whole: worth it only when
        # pieces are known, or to be stored for the next edit.
        if known or remember:
            manifest = _validate_in_pieces(check, path, source, known)
        if manifest is None:
            manifest = _validate(check, path, _parse(check, source))
        if remember:
            # Best effort: a manifest with TOML dates (marshal has no datetime) or a
            # read-only workspace is validated every time.
            with contextlib.suppress(ValueError, OSError):
                encoded = _encode(manifest)
                marshalfile.write(
                    build_dir.validated_manifest,
                    _VALIDATED_HEADER,
                    (source, validated_by, encoded),
                    key=key,
                )
                for stale in build_dir.stale_files:
                    stale.unlink(missing_ok=True)
    name = derived_key(os.fsencode(path), source)
    return replace(manifest, remembered_as=name, remember=remember)


def _last_validated(
    build_dir: BuildDir, key: bytes, validated_by: tuple[str, str]
) -> tuple[bytes, tuple[Any, ...]] | None:
    """The text and encoded manifest this engine last validated at this path, if any."""
    cached = marshalfile.read(build_dir.validated_manifest, _VALIDATED_HEADER, key=key)
    if (
        isinstance(cached, tuple)
        and len(cached) == 3
        and isinstance(cached[0], bytes)
        and cached[1] == validated_by
        and isinstance(cached[2], tuple)
    ):
        return cached[0], cached[2]
    return None


def _recall(
    last: tuple[bytes, tuple[Any, ...]] | None, source: bytes, path: Path
) -> Manifest | None:
    """The last validated manifest, if it was validated from this very text."""
    if last is None or last[0] != source:
        return None
    try:
        return _decode(last[1], path)
    except _UnreadableError:
        return None


def _known_steps(last: tuple[bytes, tuple[Any, ...]] | None) -> dict[str, dict[str, Any]]:
    """The last validated manifest's steps (encoded) by origin: those read in pieces.
    Data of another shape (which only a file signed with this user's key could hold)
    lends nothing."""
    if last is None:
        return {}
    try:
        return {step["origin"]: step for step in last[1][5] if step["origin"]}
    except (IndexError, KeyError, TypeError):
        return {}


def _validate_in_pieces(
    check: _Checker, path: Path, source: bytes, known: Mapping[str, dict[str, Any]]
) -> Manifest | None:
    """The manifest, each [[step]] piece taken from `known` under its origin or parsed
    alone, or None when the text cannot be read in pieces (workspace/pieces.py). Every
    piece not known is parsed before anything is validated (a known one parsed alone
    before), so a syntax error anywhere is reported first, by the whole text's parse,
    as when the text is read whole."""
    from buildlib.workspace import pieces

    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        return None
    preamble_text, cut = pieces.cut(text)
    raw = pieces.parse_preamble(preamble_text)
    # Tables written after the steps (the usual text that cannot be cut) are in the
    # last piece: tried first, it spares parsing all the others before the whole text.
    last = pieces.parse_piece(cut[-1]) if raw is not None and cut else None
    if raw is None or last is None:
        return None
    origin_of = derived_keys(b"step", _step_context(raw))
    steps: list[tuple[str, StepSpec | dict[str, Any]]] = []
    artifacts: list[dict[str, Any]] = []
    for piece in cut:
        origin = ""
        if piece.kind == "step":
            origin = origin_of(piece.text.encode("utf-8", "surrogatepass"))
            encoded = known.get(origin)
            if encoded is not None:
                try:
                    steps.append((origin, _decode_step(dict(encoded))))
                except _UnreadableError:
                    pass  # a marker today's packaging refuses: validated again below
                else:
                    continue
        table = last if piece is cut[-1] else pieces.parse_piece(piece)
        if table is None:
            return None
        if piece.kind == "step":
            steps.append((origin, table))
        else:
            artifacts.append(table)
    if artifacts:
        raw["artifact"] = artifacts
    return _validate(check, path, raw, steps)


def _step_context(raw: Mapping[str, Any]) -> bytes:
    """What a step's validation reads besides its own table, as written in the preamble:
    the version, and the names of the modes and tools (repr: exact for TOML's values)."""
    modes, tools = raw.get("modes", {}), raw.get("tools", {})
    return repr(
        (
            raw.get("version", 1),
            list(modes) if isinstance(modes, dict) else modes,
            list(tools) if isinstance(tools, dict) else tools,
        )
    ).encode("utf-8", "surrogatepass")


def _parse(check: _Checker, source: bytes) -> dict[str, Any]:
    from buildlib.core import toml

    try:
        return toml.loads(source.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise check.error(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", fix="save the file as UTF-8"
        ) from None
    except toml.TOMLDecodeError as exc:
        if source.startswith(b"\xef\xbb\xbf"):
            raise check.error(
                "starts with a byte order mark (U+FEFF), which TOML does not allow",
                fix="save it as UTF-8 without a BOM (most editors call it plain UTF-8)",
            ) from None
        raise check.error(f"invalid TOML: {exc}", fix="fix the syntax at that line") from None
    except RecursionError:
        raise check.error(
            "invalid TOML: arrays or tables nested too deeply to read",
            fix="nest them less deeply",
        ) from None


def _validate(
    check: _Checker,
    path: Path,
    raw: dict[str, Any],
    steps: list[tuple[str, StepSpec | dict[str, Any]]] | None = None,
) -> Manifest:
    """The manifest `raw` declares. `steps`: its [[step]] tables, each with its origin,
    and those already validated under that origin as StepSpecs (read in pieces:
    `raw` then holds no `step` key); None: `raw["step"]`, of no origin."""
    check.known_keys(raw, TOP_KEYS, where="the manifest")

    version = raw.get("version", 1)
    if version not in VERSIONS or not isinstance(version, int) or isinstance(version, bool):
        raise check.error(
            f"unknown manifest version {version!r}",
            key="version",
            fix="write version = 2 (paths relative to each step's cwd) or leave "
            "it out (version 1: paths relative to the workspace root)",
        )
    workspace = _table(check, raw, "workspace")
    check.known_keys(workspace, WORKSPACE_KEYS, where="[workspace]")
    global_vars = check.string_map(raw, "vars")
    modes = _load_modes(check, raw)
    default_mode = check.string(workspace, "default_mode", _default_mode(modes), template=False)
    exclude = (
        check.strings(workspace, "exclude", template=False)
        if "exclude" in workspace
        else DEFAULT_EXCLUDES
    )
    for pattern in exclude:
        check.relative_path(pattern, step=None, key="workspace.exclude")
    if default_mode not in modes:
        raise check.error(
            f"default_mode '{default_mode}' is not a declared mode",
            key="workspace.default_mode",
            fix="use one of: " + ", ".join(modes),
        )
    tools = _load_tools(check, raw)
    loaded = _load_steps(
        check, _step_tables(check, raw) if steps is None else steps, modes, tools, version=version
    )
    artifacts = _load_artifacts(check, raw, loaded, modes)
    cache_table = _table(check, raw, "cache")
    check.known_keys(cache_table, CACHE_KEYS, where="[cache]")
    trusted_keys = check.strings(cache_table, "trusted_keys", template=False)
    for text in trusted_keys:
        from buildlib.cache.signing import public_key_problem

        problem = public_key_problem(text)
        if problem is not None:
            raise check.error(
                f"not an Ed25519 public key: {problem}",
                key="cache.trusted_keys",
                fix="paste the 'ed25519:...' line `buildlib keygen` printed with the private key",
            )
    cache = CacheSettings(
        remote=check.string(cache_table, "remote", "", template=False),
        remote_read_only=check.boolean(cache_table, "remote_read_only", False),
        remote_header_env=check.string(cache_table, "remote_header_env", "", template=False),
        trusted_keys=trusted_keys,
    )
    return Manifest(
        path=path,
        root=path.parent,
        name=check.string(workspace, "name", path.parent.name, template=False),
        exclude=exclude,
        default_mode=default_mode,
        vars=global_vars,
        tools=tools,
        modes=modes,
        steps=loaded,
        artifacts=artifacts,
        cache=cache,
        version=version,
        package_manager=check.string(workspace, "package_manager", "", template=False),
    )


def _default_mode(modes: Mapping[str, ModeSpec]) -> str:
    """`development` when declared (the app's convention), else the first mode."""
    return "development" if "development" in modes else next(iter(modes))


def _table(check: _Checker, raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise check.error(
            f"expected a table [{key}], got {_type_name(value)}",
            key=key,
            fix=f"write it as a [{key}] table",
        )
    return value


def _load_modes(check: _Checker, raw: Mapping[str, Any]) -> dict[str, ModeSpec]:
    table = _table(check, raw, "modes")
    if not table:  # a repository with no notion of modes has one
        return {IMPLICIT_MODE: ModeSpec(name=IMPLICIT_MODE, vars={}, env={})}
    modes: dict[str, ModeSpec] = {}
    for name, body in table.items():
        if not MODE_NAME.fullmatch(name):
            raise check.error(
                f"invalid mode name {name!r}",
                key=f"modes.{name}",
                fix="use letters, digits, '.', '_' and '-', starting with a letter or digit, "
                "at most 64 characters (a mode names files under .buildlib/ and nox sessions)",
            )
        if not isinstance(body, dict):
            raise check.error(
                "expected a table", key=f"modes.{name}", fix=f"write it as [modes.{name}]"
            )
        check.known_keys(body, MODE_KEYS, where=f"[modes.{name}]")
        modes[name] = ModeSpec(
            name=name,
            vars=check.string_map(body, "vars", label=f"modes.{name}.vars"),
            env=check.string_map(body, "env", label=f"modes.{name}.env"),
        )
    return modes


def _load_tools(check: _Checker, raw: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    tools: dict[str, tuple[str, ...]] = {}
    for name in _table(check, raw, "tools"):
        argv = check.strings(raw["tools"], name, template=False)
        if not argv:
            raise check.error(
                "empty version command",
                key=f"tools.{name}",
                fix=f'write it as {name} = ["{name}", "--version"]',
            )
        tools[name] = argv
    return tools


def _load_override(check: _Checker, body: object, *, step: str, key: str) -> Override:
    if not isinstance(body, dict):
        raise check.error(
            "expected a table",
            step=step,
            key=key,
            fix=f"write it as [step.{key}] with args and/or env",
        )
    check.known_keys(body, OVERRIDE_KEYS, where=f"[step.{key}]", step=step)
    return Override(
        args=check.strings(body, "args", step=step),
        env=check.string_map(body, "env", step=step, label=f"{key}.env"),
        tools=check.strings(body, "tools", step=step, template=False),
    )


def _step_tables(
    check: _Checker, raw: Mapping[str, Any]
) -> list[tuple[str, StepSpec | dict[str, Any]]]:
    """The whole text's [[step]] tables, of no origin."""
    tables = raw.get("step", [])
    if not isinstance(tables, list) or not all(isinstance(e, dict) for e in tables):
        raise check.error(
            "expected [[step]] tables", key="step", fix="declare each step as a [[step]] table"
        )
    return [("", table) for table in tables]


def _load_steps(
    check: _Checker,
    entries: list[tuple[str, StepSpec | dict[str, Any]]],
    modes: Mapping[str, ModeSpec],
    tools: Mapping[str, tuple[str, ...]],
    *,
    version: int,
) -> dict[str, StepSpec]:
    steps: dict[str, StepSpec] = {}
    for index, (origin, body) in enumerate(entries):
        name = body.name if isinstance(body, StepSpec) else body.get("name")
        if not isinstance(name, str):
            raise check.error(
                f"step #{index + 1} has no name",
                key="name",
                fix='add name = "..." to that [[step]] table',
            )
        if not STEP_NAME.fullmatch(name):
            raise check.error(
                "invalid step name",
                step=name,
                key="name",
                fix="use lower-case letters, digits and '-', starting with a letter or "
                "digit, at most 100 characters",
            )
        if name in steps:
            raise check.error(
                "duplicate step",
                step=name,
                key="name",
                fix="rename one of the two [[step]] tables with this name",
            )
        steps[name] = (
            body
            if isinstance(body, StepSpec)
            else _load_step(check, body, name, modes, tools, version=version, origin=origin)
        )
    if not steps:
        raise check.error("no steps declared", key="step", fix="add at least one [[step]] table")
    for step in steps.values():
        for dep in step.depends_on:
            if dep not in steps:
                import difflib  # error paths only

                close = difflib.get_close_matches(dep, list(steps), n=1)
                hint = f"did you mean '{close[0]}'?" if close else "declare that step or remove it"
                raise check.error(
                    f"depends on unknown step '{dep}'", step=step.name, key="depends_on", fix=hint
                )
            if dep == step.name:
                raise CycleError([step.name, step.name], file=check.path)
            if steps[dep].service:
                raise check.error(
                    f"depends on service step '{dep}', which runs until it is "
                    "stopped, so nothing after it could start",
                    step=step.name,
                    key="depends_on",
                    fix=f"remove '{dep}' from depends_on: a service starts once "
                    "its own dependencies are built and runs beside the build "
                    "(`buildlib watch`)",
                )
    cycle = find_cycle({name: step.depends_on for name, step in steps.items()})
    if cycle:
        raise CycleError(cycle, file=check.path)
    _check_directories(check, steps, version=version)
    return steps


def _check_directories(check: _Checker, steps: Mapping[str, StepSpec], *, version: int) -> None:
    """Each step's `cwd`, when written without templates, must be a directory, or one a
    step declares among its outputs (a directory made by the build): otherwise the step
    could only fail when it starts. One stat per distinct directory, or one listing of
    a directory holding many of them (core/entrykinds.py)."""
    import stat

    from buildlib.core.entrykinds import EntryKinds, is_junction

    root = os.fspath(check.path.parent)  # strings: one stat per directory, no Path objects
    seen: dict[str, str | None] = {".": None}  # cwd -> the problem with it, or None
    kinds = EntryKinds()  # 10,000 cwds in packages/: one listing of it, not 10,000 stats
    for step in steps.values():
        cwd = normal_path(step.cwd)
        if not cwd or "{" in cwd:
            continue  # the root, or known only once templates are filled (plan time)
        path = f"{root}/{cwd}"
        if cwd not in seen and kinds.kind(path) == stat.S_IFDIR and not is_junction(path):
            seen[cwd] = None  # a directory, not a link: what the stat below would find
        if cwd not in seen:
            try:
                is_dir = stat.S_ISDIR(os.stat(path).st_mode)  # noqa: PTH116 - strings
                seen[cwd] = None if is_dir else "is a file, not a directory"
            except FileNotFoundError:
                seen[cwd] = (
                    None if _made_by_a_step(cwd, steps, version=version) else "does not exist"
                )
            except NotADirectoryError:
                seen[cwd] = "is below a file, not a directory"
            except OSError as exc:
                seen[cwd] = f"cannot be read ({exc.strerror})"
        problem = seen[cwd]
        if problem is not None:
            parent = cwd.rpartition("/")[0] or "."
            fix = (
                f"use the directory the command runs in (its parent is {parent!r})"
                if problem.startswith("is a file")
                else "use a directory: a part of this path is a file"
                if problem.startswith("is below")
                else "create it, correct the path (relative to the workspace root, "
                f"{root}), or declare it among the outputs of the step that creates it"
            )
            raise check.error(f"cwd {step.cwd!r} {problem}", step=step.name, key="cwd", fix=fix)


def _made_by_a_step(cwd: str, steps: Mapping[str, StepSpec], *, version: int) -> bool:
    """Whether some step declares `cwd`, a directory above it or a path below it as an
    output (the literal part of the pattern, before any template or glob)."""
    for step in steps.values():
        for output in step.outputs:
            pattern = root_relative(step.cwd, output) if version == 2 else output
            literal = re.split(r"[{*?\[]", pattern, maxsplit=1)[0].strip("/")
            if literal and (
                cwd == literal or cwd.startswith(literal + "/") or literal.startswith(cwd + "/")
            ):
                return True
    return False


def _load_step(
    check: _Checker,
    body: Mapping[str, Any],
    name: str,
    modes: Mapping[str, ModeSpec],
    tools: Mapping[str, tuple[str, ...]],
    *,
    version: int,
    origin: str = "",
) -> StepSpec:
    check.known_keys(body, STEP_KEYS, where="[[step]]", step=name)
    service, restart_on, restart_on_deps = _service(check, body, name, version=version)
    command, script = _command(check, body, name)
    inputs = check.strings(body, "inputs", step=name)
    outputs, store = _outputs(check, body, name)
    exclude = check.strings(body, "exclude", step=name)
    clean = check.strings(body, "clean", step=name)
    for key, patterns in (
        ("inputs", inputs),
        ("outputs", outputs),
        ("exclude", exclude),
        ("clean", clean),
    ):
        for pattern in patterns:
            check.relative_path(pattern, step=name, key=key, cwd_relative=version == 2)
    cwd = check.string(body, "cwd", ".", step=name)
    check.relative_path(cwd, step=name, key="cwd")
    env_inputs = check.strings(body, "env_inputs", step=name, template=False)
    for env_name in env_inputs:
        check.env_name(env_name, step=name, key="env_inputs")
    retries = body.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
        raise check.error(
            f"expected an integer from 0 to 10, got {retries!r}",
            step=name,
            key="retries",
            fix="write retries = 2 (0 disables retries)",
        )
    when: Marker | None = None
    if "when" in body:
        text = check.string(body, "when", step=name, template=False)
        from packaging.markers import InvalidMarker, Marker

        try:
            when = Marker(text)
        except InvalidMarker as exc:
            raise check.error(
                f"invalid PEP 508 marker: {exc}",
                step=name,
                key="when",
                fix="write e.g. when = 'sys_platform == \"win32\"'",
            ) from None
    step_modes: tuple[str, ...] | None = None
    if "modes" in body:
        step_modes = check.strings(body, "modes", step=name, template=False)
        for mode in step_modes:
            if mode not in modes:
                raise check.error(
                    f"unknown mode '{mode}'",
                    step=name,
                    key="modes",
                    fix="use one of: " + ", ".join(modes),
                )
    step_tools = check.strings(body, "tools", step=name, template=False)
    mode_overrides = _overrides(check, body, "mode", name, allowed=tuple(modes))
    target_overrides = _overrides(check, body, "target", name, allowed=tuple(TARGETS))
    named = [("tools", t) for t in step_tools] + [
        (f"{kind}.{key}.tools", t)
        for kind, table in (("mode", mode_overrides), ("target", target_overrides))
        for key, override in table.items()
        for t in override.tools
    ]
    for key, tool in named:
        if tool not in tools:
            raise check.error(
                f"unknown tool '{tool}'",
                step=name,
                key=key,
                fix=f'declare it under [tools]: {tool} = ["{tool}", "--version"]',
            )
    return StepSpec(
        name=name,
        description=check.string(body, "description", "", step=name, template=False),
        group=check.string(
            body, "group", name.split("-", maxsplit=1)[0], step=name, template=False
        ),
        command=command,
        cwd=cwd,
        env=check.string_map(body, "env", step=name),
        env_inputs=env_inputs,
        depends_on=check.strings(body, "depends_on", step=name, template=False),
        inputs=inputs,
        exclude=exclude,
        outputs=outputs,
        clean=clean,
        tools=step_tools,
        retries=retries,
        when=when,
        when_text=str(body["when"]) if when is not None else None,
        modes=step_modes,
        cache=check.boolean(body, "cache", True, step=name),
        mode_overrides=mode_overrides,
        target_overrides=target_overrides,
        script=script,
        store=store,
        inputs_declared="inputs" in body or version == 1 or service,
        service=service,
        restart_on=restart_on,
        restart_on_deps=restart_on_deps,
        origin=origin,
    )


def _service(
    check: _Checker, body: Mapping[str, Any], name: str, *, version: int
) -> tuple[bool, tuple[str, ...], bool]:
    """`service`, `restart_on` and `restart_on_deps`, and the keys a service cannot have:
    it is never fingerprinted, skipped, cached or retried (docs/watch.md)."""
    service = check.boolean(body, "service", False, step=name)
    if not service:
        for key in SERVICE_KEYS:
            if key in body:
                raise check.error(
                    "only a service step is restarted",
                    step=name,
                    key=key,
                    fix=f"add service = true to this step, or remove {key}",
                )
        return False, (), False
    refused = {
        "inputs": "a service has no inputs: it is never fingerprinted or skipped",
        "retries": "a service that exits is restarted with a growing delay, not retried",
        "cache": "a service is never cached",
    }
    fixes = {
        "inputs": "rename it restart_on: the files whose change restarts the service",
        "retries": "remove retries",
        "cache": "remove cache",
    }
    for key, why in refused.items():
        if key in body:
            raise check.error(why, step=name, key=key, fix=fixes[key])
    restart_on = check.strings(body, "restart_on", step=name)
    for pattern in restart_on:
        check.relative_path(pattern, step=name, key="restart_on", cwd_relative=version == 2)
    return True, restart_on, check.boolean(body, "restart_on_deps", False, step=name)


def _command(
    check: _Checker, body: Mapping[str, Any], name: str
) -> tuple[tuple[str, ...], str | None]:
    """The step's argv, or the package.json script it names instead (one of the two)."""
    if "script" in body:
        if "command" in body:
            raise check.error(
                "both `command` and `script`",
                step=name,
                key="script",
                fix="keep one: script runs a package.json script through the "
                "package manager, command any program",
            )
        script = check.string(body, "script", step=name)
        if not script.strip():
            raise check.error(
                "empty script name",
                step=name,
                key="script",
                fix='name a package.json script: script = "build"',
            )
        return (), script
    command = check.strings(body, "command", step=name)
    if not command or not command[0].strip():
        raise check.error(
            "empty command",
            step=name,
            key="command",
            fix='give the program and its arguments: command = ["prog", "arg"] '
            '(or script = "build" for a package.json script)',
        )
    return command, None


def _outputs(
    check: _Checker, body: Mapping[str, Any], name: str
) -> tuple[tuple[str, ...], dict[str, str]]:
    """Output patterns, each a string or a table `{ path = "...", store = "archive" }`."""
    value = body.get("outputs", [])
    if not isinstance(value, list):
        raise check.error(
            f"expected a list, got {_type_name(value)}",
            step=name,
            key="outputs",
            fix='write outputs = ["dist"] or [{ path = "node_modules", store = "archive" }]',
        )
    paths: list[str] = []
    store: dict[str, str] = {}
    for item in value:
        if isinstance(item, str):
            check.template(item, step=name, key="outputs")
            paths.append(item)
            continue
        if not isinstance(item, dict):
            raise check.error(
                f"an output must be a string or a table, got {_type_name(item)}",
                step=name,
                key="outputs",
                fix='write "dist" or { path = "dist" }',
            )
        check.known_keys(item, ("path", "store"), where="an output table", step=name)
        path = check.string(item, "path", step=name)
        how = check.string(item, "store", "", step=name, template=False)
        if how and how not in STORES:
            raise check.error(
                f"unknown store {how!r} for output {path!r}",
                step=name,
                key="outputs.store",
                fix="use one of: " + ", ".join(STORES),
            )
        if how == "archive" and any(c in path for c in "*?["):
            raise check.error(
                f"an archived output must name one directory, not a pattern: {path!r}",
                step=name,
                key="outputs.store",
                fix='archive the directory itself, e.g. { path = "node_modules", '
                'store = "archive" }, or drop store = "archive"',
            )
        paths.append(path)
        if how:
            store[path] = how
    return tuple(paths), store


def root_relative(cwd: str, pattern: str) -> str:
    """A version 2 step's path from the workspace root: `//x` is `x`; anything else is
    joined to the step's cwd and normalized (`..` resolved lexically). The caller checks
    that the result does not start with `..`."""
    if pattern.startswith(ROOT_PREFIX):
        return pattern[len(ROOT_PREFIX) :].strip("/") or "."
    base = cwd.replace("\\", "/").strip("/")
    joined = posixpath.normpath(f"{base}/{pattern}" if base not in ("", ".") else pattern)
    return joined if pattern.rstrip("/") not in ("", ".") else (base or ".")


def _overrides(
    check: _Checker, body: Mapping[str, Any], key: str, step: str, *, allowed: tuple[str, ...]
) -> dict[str, Override]:
    table = body.get(key, {})
    if not isinstance(table, dict):
        raise check.error(
            "expected a table of overrides",
            step=step,
            key=key,
            fix=f"write [step.{key}.NAME] tables",
        )
    result: dict[str, Override] = {}
    for name, override in table.items():
        if name not in allowed:
            raise check.error(
                f"unknown {key} '{name}'",
                step=step,
                key=f"{key}.{name}",
                fix="use one of: " + ", ".join(allowed),
            )
        result[name] = _load_override(check, override, step=step, key=f"{key}.{name}")
    return result


def _load_artifacts(
    check: _Checker,
    raw: Mapping[str, Any],
    steps: Mapping[str, StepSpec],
    modes: Mapping[str, ModeSpec],
) -> tuple[ArtifactSpec, ...]:
    entries = raw.get("artifact", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise check.error(
            "expected [[artifact]] tables",
            key="artifact",
            fix="declare each artifact as an [[artifact]] table",
        )
    artifacts: list[ArtifactSpec] = []
    kinds = [k.value for k in ArtifactKind]
    for body in entries:
        check.known_keys(body, ARTIFACT_KEYS, where="[[artifact]]")
        path = check.string(body, "path")
        check.relative_path(path, step=None, key="artifact.path")
        step = check.string(body, "step", template=False)
        if step not in steps:
            raise check.error(
                f"artifact {path!r} names unknown step '{step}'",
                key="artifact.step",
                fix="use one of: " + ", ".join(steps),
            )
        if steps[step].service:
            raise check.error(
                f"artifact {path!r} names service step '{step}', which a build never runs",
                key="artifact.step",
                fix="name the build step that makes the file",
            )
        kind_text = check.string(body, "kind", "exists", template=False)
        if kind_text not in kinds:
            raise check.error(
                f"artifact {path!r}: unknown kind '{kind_text}'",
                key="artifact.kind",
                fix="use one of: " + ", ".join(kinds),
            )
        artifact_modes: tuple[str, ...] | None = None
        if "modes" in body:
            artifact_modes = check.strings(body, "modes", template=False)
            unknown = [m for m in artifact_modes if m not in modes]
            if unknown:
                raise check.error(
                    f"artifact {path!r}: unknown mode '{unknown[0]}'",
                    key="artifact.modes",
                    fix="use one of: " + ", ".join(modes),
                )
        artifacts.append(
            ArtifactSpec(
                path=path,
                step=step,
                kind=ArtifactKind(kind_text),
                run=check.strings(body, "run"),
                expect=check.string(body, "expect", ""),
                modes=artifact_modes,
            )
        )
    return tuple(artifacts)


# The validated manifest as plain data for `.buildlib/validated-manifest.marshal`
# (marshal stores tuples, dicts and strings only). A step is a dict of its fields, so a
# field added to StepSpec is remembered without a change here; one marshal cannot store
# makes the write fail, and the manifest is then validated every time.


def _encode(manifest: Manifest) -> tuple[Any, ...]:
    return (
        manifest.name,
        manifest.default_mode,
        dict(manifest.vars),
        dict(manifest.tools),
        tuple((m.name, dict(m.vars), dict(m.env)) for m in manifest.modes.values()),
        tuple(_encode_step(step) for step in manifest.steps.values()),
        tuple((a.path, a.step, a.kind.value, a.run, a.expect, a.modes) for a in manifest.artifacts),
        tuple(getattr(manifest.cache, f.name) for f in fields(CacheSettings)),
        manifest.exclude,
        manifest.version,
        manifest.package_manager,
    )


def _decode(data: tuple[Any, ...], path: Path) -> Manifest:
    name, default_mode, variables, tools, modes, steps, artifacts, cache = data[:8]
    exclude, version, package_manager = data[8:]
    decoded_steps = (_decode_step(values) for values in steps)
    return Manifest(
        path=path,
        root=path.parent,
        name=name,
        default_mode=default_mode,
        vars=variables,
        tools=tools,
        modes={m[0]: ModeSpec(name=m[0], vars=m[1], env=m[2]) for m in modes},
        steps={step.name: step for step in decoded_steps},
        artifacts=tuple(
            ArtifactSpec(
                path=a[0], step=a[1], kind=ArtifactKind(a[2]), run=a[3], expect=a[4], modes=a[5]
            )
            for a in artifacts
        ),
        cache=CacheSettings(**dict(zip(_CACHE_FIELDS, cache, strict=True))),
        exclude=exclude,
        version=version,
        package_manager=package_manager,
    )


class _UnreadableError(Exception):
    """A remembered manifest this engine cannot rebuild (a `when` marker that today's
    packaging refuses): validated again from the text."""


def _encode_step(step: StepSpec) -> dict[str, Any]:
    values = {name: getattr(step, name) for name in _STEP_FIELDS}
    for name, value in values.items():
        if name == "when":
            values[name] = None  # rebuilt from when_text
        elif name == "when_text" and value is None and step.when is not None:
            values[name] = str(step.when)  # a StepSpec not read from a manifest
        elif name in ("mode_overrides", "target_overrides"):
            values[name] = {k: (o.args, dict(o.env), o.tools) for k, o in value.items()}
        elif isinstance(value, Mapping):
            values[name] = dict(value)
    return values


def _decode_step(values: dict[str, Any]) -> StepSpec:
    if values["when_text"] is not None:
        from packaging.markers import InvalidMarker, Marker

        try:
            values["when"] = Marker(values["when_text"])
        except InvalidMarker:
            raise _UnreadableError from None
    for key in ("mode_overrides", "target_overrides"):
        if values[key]:
            values[key] = {
                k: Override(args=a, env=e, tools=t) for k, (a, e, t) in values[key].items()
            }
    return restore(StepSpec, values)


_STEP_FIELDS = tuple(f.name for f in fields(StepSpec))
_CACHE_FIELDS = tuple(f.name for f in fields(CacheSettings))
