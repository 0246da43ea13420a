"""Where the engine keeps its own files in a workspace: one object for `.buildlib/`.

    .buildlib/
      lock                           the workspace lock (run/lock.py)
      validated-manifest.marshal     the validated manifest, with its text and the engine
                                     (workspace/manifest.py)
      plans/<key>.marshal            plans and what they came from (planning/remembered.py)
      filehash.cache                 the inputs' stat cache (incremental/filehash.py)
      tools.json                     tool versions (incremental/toolversions.py)
      state/<mode>-<target>/index.marshal which steps are up to date, signed (run/step_state.py)
      state/<mode>-<target>/<step>.json   each step's last success (run/caching_gate.py)
      journal/<mode>-<target>.jsonl  which steps finished, build after build (run/journal.py)
      logs/<mode>-<target>/<step>.log     each step's output
      reports/                       JSON, trace and HTML reports (report/writers.py)
      history.jsonl                  one line per build, for estimates and metrics
      last_build.json                the mode and target built last (verify, metrics)
      artifacts/<mode>-<target>.json what verify found (verify/checks.py)
      watch/<mode>-<target>.json     what `watch` is doing: services, last rebuild (watch/view.py)
      watch/<mode>-<target>.lock     held by the one `watch` of that mode and target

Nothing else in the engine spells these names; nothing here creates a directory.
"""

from __future__ import annotations

from pathlib import Path

DIRECTORY = ".buildlib"


class BuildDir:
    """The `.buildlib/` directory of the workspace at `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / DIRECTORY

    def is_own(self) -> bool:
        """Whether `.buildlib` is a directory of this workspace's (or not made yet), not a
        symlink a repository shipped: the engine writes its state only into its own."""
        try:
            return not self.path.is_symlink()
        except OSError:
            return False

    @staticmethod
    def tag(mode: str, target: str) -> str:
        """How a mode and target name their files: `production-x86_64-unknown-linux-gnu`."""
        return f"{mode}-{target}"

    @property
    def lock(self) -> Path:
        return self.path / "lock"

    @property
    def validated_manifest(self) -> Path:
        return self.path / "validated-manifest.marshal"

    @property
    def plans(self) -> Path:
        return self.path / "plans"

    @property
    def filehash_cache(self) -> Path:
        return self.path / "filehash.cache"

    @property
    def tool_versions(self) -> Path:
        return self.path / "tools.json"

    @property
    def reports(self) -> Path:
        return self.path / "reports"

    @property
    def history(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def last_build(self) -> Path:
        return self.path / "last_build.json"

    def state(self, mode: str, target: str) -> Path:
        return self.path / "state" / self.tag(mode, target)

    def journal(self, mode: str, target: str) -> Path:
        return self.path / "journal" / f"{self.tag(mode, target)}.jsonl"

    def logs(self, mode: str, target: str) -> Path:
        return self.path / "logs" / self.tag(mode, target)

    def artifacts(self, mode: str, target: str) -> Path:
        return self.path / "artifacts" / f"{self.tag(mode, target)}.json"

    def watch_status(self, mode: str, target: str) -> Path:
        return self.path / "watch" / f"{self.tag(mode, target)}.json"

    def watch_lock(self, mode: str, target: str) -> Path:
        return self.path / "watch" / f"{self.tag(mode, target)}.lock"
