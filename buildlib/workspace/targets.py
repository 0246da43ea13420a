"""Target triples: the six this tool plans for, the host, and whether a target can be built here.

One table maps each triple to the names other ecosystems use for it (Rust, Node, Electron),
the binary format its executables have, and the CI runner that builds it natively.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterable
from pathlib import Path

from buildlib.core.errors import TargetError
from buildlib.core.records import record

PROBE_TIMEOUT = 10.0  # seconds for `rustc --print sysroot`


@record
class Target:
    triple: str
    os: str  # "linux" | "darwin" | "windows"
    arch: str  # "x86_64" | "aarch64"
    rust_target: str
    node_platform: str  # process.platform
    node_arch: str  # process.arch
    electron_platform: str
    electron_arch: str
    exe_suffix: str
    dylib_suffix: str
    binary_format: str  # "elf" | "macho" | "pe"
    runner: str  # GitHub Actions runner label that builds it natively
    cross_linker_package: str = ""  # Debian package providing a cross linker from x86_64 Linux

    @property
    def node_triple(self) -> str:
        """platform-arch[-abi], as prebuilt Node addons are named (linux-x64-gnu, darwin-arm64)."""
        abi = {"linux": "-gnu", "darwin": "", "windows": "-msvc"}[self.os]
        return f"{self.node_platform}-{self.node_arch}{abi}"

    @property
    def template_vars(self) -> dict[str, str]:
        return {
            "target": self.triple,
            "rust_target": self.rust_target,
            "node_platform": self.node_platform,
            "node_arch": self.node_arch,
            "electron_platform": self.electron_platform,
            "electron_arch": self.electron_arch,
            "node_triple": self.node_triple,
            "exe_suffix": self.exe_suffix,
            "dylib_suffix": self.dylib_suffix,
        }


def _target(triple: str, os_name: str, arch: str, runner: str, linker: str = "") -> Target:
    node_platform = {"linux": "linux", "darwin": "darwin", "windows": "win32"}[os_name]
    node_arch = {"x86_64": "x64", "aarch64": "arm64"}[arch]
    return Target(
        triple=triple,
        os=os_name,
        arch=arch,
        rust_target=triple,
        node_platform=node_platform,
        node_arch=node_arch,
        electron_platform=node_platform,
        electron_arch=node_arch,
        exe_suffix=".exe" if os_name == "windows" else "",
        dylib_suffix={"linux": ".so", "darwin": ".dylib", "windows": ".dll"}[os_name],
        binary_format={"linux": "elf", "darwin": "macho", "windows": "pe"}[os_name],
        runner=runner,
        cross_linker_package=linker,
    )


TARGETS: dict[str, Target] = {
    t.triple: t
    for t in (
        _target(
            "x86_64-unknown-linux-gnu", "linux", "x86_64", "ubuntu-24.04", "gcc-x86-64-linux-gnu"
        ),
        _target(
            "aarch64-unknown-linux-gnu",
            "linux",
            "aarch64",
            "ubuntu-24.04-arm",
            "gcc-aarch64-linux-gnu",
        ),
        _target("x86_64-apple-darwin", "darwin", "x86_64", "macos-15-intel"),
        _target("aarch64-apple-darwin", "darwin", "aarch64", "macos-14"),
        _target("x86_64-pc-windows-msvc", "windows", "x86_64", "windows-2022"),
        _target("aarch64-pc-windows-msvc", "windows", "aarch64", "windows-11-arm"),
    )
}


def host_triple() -> str:
    """The triple of the machine running this process, one of `TARGETS`."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}.get(
        machine
    )
    os_name = {"linux": "linux", "darwin": "darwin", "windows": "windows"}.get(system)
    for target in TARGETS.values():
        if target.os == os_name and target.arch == arch:
            return target.triple
    raise TargetError(
        f"this host ({system} {machine}) is not one of the supported targets",
        fix="supported: " + ", ".join(TARGETS),
    )


def get_target(triple: str) -> Target:
    """The table entry for `triple`, or a TargetError listing the known ones."""
    try:
        return TARGETS[triple]
    except KeyError:
        raise TargetError(
            f"unknown target triple '{triple}'",
            fix="use one of: " + ", ".join(TARGETS),
        ) from None


@functools.cache
def _rust_sysroot() -> Path | None:
    from buildlib.core.bounded import run_bounded

    try:
        done = run_bounded(["rustc", "--print", "sysroot"], cwd=None, timeout=PROBE_TIMEOUT)
    except OSError:
        return None
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def rust_target_installed(rust_target: str) -> bool:
    """True when the Rust standard library for `rust_target` is in the active toolchain."""
    sysroot = _rust_sysroot()
    return sysroot is not None and (sysroot / "lib" / "rustlib" / rust_target / "lib").is_dir()


def check_buildable(target: Target, host: Target, tools: Iterable[str]) -> None:
    """Fail before any step starts when `target` cannot be built on `host`.

    `tools` are the tool names the selected steps declare; only the toolchains they
    need are checked. The message names the command or runner that fixes it.
    """
    if target.triple == host.triple:
        return
    if target.os != host.os:
        raise TargetError(
            f"target {target.triple} needs a {target.os} host to link and run its tools; "
            f"this host is {host.triple}",
            fix=f"build it on the CI runner '{target.runner}' (see ci/), "
            "or plan it here with -- --dry-run",
        )
    tool_set = set(tools)
    if tool_set & {"cargo", "rustc"} and not rust_target_installed(target.rust_target):
        raise TargetError(
            f"target {target.triple}: the Rust standard library for {target.rust_target} "
            "is not installed in this toolchain",
            fix=f"rustup target add {target.rust_target}"
            + (
                f" && apt-get install {target.cross_linker_package}"
                if target.cross_linker_package
                else ""
            )
            + f", or build it on the CI runner '{target.runner}'",
        )
