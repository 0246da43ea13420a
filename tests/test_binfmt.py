"""binfmt: real gcc output for ELF, hand-built Mach-O and PE headers (no cross compiler here).

The crafted headers are cross-checked with file(1) when it is installed, so the bytes
these tests feed the parser are ones an independent tool recognises too.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from helpers import needs_linux_x64_gcc

from buildlib.verify.binfmt import (
    BinaryFormat,
    BinaryInfo,
    NotExecutable,
    describe_mismatch,
    parse_binary,
    read_binary_info,
)
from buildlib.workspace.targets import TARGETS, get_target, host_triple

LINUX_X64 = get_target("x86_64-unknown-linux-gnu")
LINUX_ARM = get_target("aarch64-unknown-linux-gnu")
MAC_X64 = get_target("x86_64-apple-darwin")
MAC_ARM = get_target("aarch64-apple-darwin")
WIN_X64 = get_target("x86_64-pc-windows-msvc")
WIN_ARM = get_target("aarch64-pc-windows-msvc")

C_PROGRAM = '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n'


@pytest.fixture(scope="module")
def gcc_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real executable, shared object and object file built by gcc."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    work = tmp_path_factory.mktemp("gcc")
    (work / "hello.c").write_text(C_PROGRAM)
    outputs = {"exe": work / "hello", "so": work / "libhello.so", "obj": work / "hello.o"}
    for flags, out in (
        (["-o"], outputs["exe"]),
        (["-shared", "-fPIC", "-o"], outputs["so"]),
        (["-c", "-o"], outputs["obj"]),
    ):
        subprocess.run(
            ["gcc", *flags, str(out), str(work / "hello.c")], check=True, stdin=subprocess.DEVNULL
        )
    return outputs


# --- crafted headers -------------------------------------------------------------------


def elf_header(*, machine: int, bits: int = 64, big_endian: bool = False, e_type: int = 2) -> bytes:
    endian = ">" if big_endian else "<"
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 2 if big_endian else 1, 1]) + bytes(9)
    rest = struct.pack(endian + "HHI", e_type, machine, 1)
    return (ident + rest).ljust(64, b"\0")


CPU_X86_64 = 0x01000007
CPU_ARM64 = 0x0100000C
MH_EXECUTE = 2
MH_OBJECT = 1


def macho_header(*, cputype: int, filetype: int = MH_EXECUTE) -> bytes:
    # mach_header_64: magic, cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags, reserved
    cpusubtype = 3 if cputype == CPU_X86_64 else 0
    return struct.pack("<IiiIIIII", 0xFEEDFACF, cputype, cpusubtype, filetype, 0, 0, 0, 0)


def fat_binary(cputypes: list[int], *, declared: list[int] | None = None) -> bytes:
    """A universal binary: fat header, fat_arch entries, then one thin header per slice."""
    declared = declared or cputypes
    align = 12  # 4 KiB, as lipo does
    data = bytearray(struct.pack(">II", 0xCAFEBABE, len(cputypes)))
    offsets = [(index + 1) << align for index in range(len(cputypes))]
    for cputype, offset in zip(declared, offsets, strict=True):
        data += struct.pack(">iiIII", cputype, 0, offset, 32, align)
    for cputype, offset in zip(cputypes, offsets, strict=True):
        data = data.ljust(offset, b"\0") + macho_header(cputype=cputype)
    return bytes(data)


def pe_file(*, machine: int, characteristics: int = 0x0022, lfanew: int = 0x80) -> bytes:
    dos = bytearray(b"MZ".ljust(lfanew, b"\0"))
    dos[0x3C:0x40] = struct.pack("<I", lfanew)
    # COFF header: Machine, NumberOfSections, TimeDateStamp, PointerToSymbolTable,
    # NumberOfSymbols, SizeOfOptionalHeader, Characteristics; then a PE32+ optional header magic.
    coff = struct.pack("<HHIIIHH", machine, 0, 0, 0, 0, 240, characteristics)
    return bytes(dos) + b"PE\0\0" + coff + struct.pack("<H", 0x20B).ljust(240, b"\0")


def parse(data: bytes) -> BinaryInfo | NotExecutable:
    return parse_binary(io.BytesIO(data))


def file_says(tmp_path: Path, data: bytes) -> str:
    """file(1)'s description of `data`, or skip when file(1) is not installed."""
    if shutil.which("file") is None:
        pytest.skip("file(1) is not installed")
    path = tmp_path / "probe.bin"
    path.write_bytes(data)
    return subprocess.run(
        ["file", "-b", str(path)],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout


# --- ELF from gcc ------------------------------------------------------------------------


@needs_linux_x64_gcc
def test_gcc_executable_is_elf_x86_64(gcc_outputs: dict[str, Path]) -> None:
    info = read_binary_info(gcc_outputs["exe"])
    assert info == BinaryInfo(format=BinaryFormat.ELF, machines=("x86_64",))
    assert describe_mismatch(info, LINUX_X64) is None


@needs_linux_x64_gcc
def test_gcc_shared_object_counts_as_linked(gcc_outputs: dict[str, Path]) -> None:
    assert read_binary_info(gcc_outputs["so"]) == BinaryInfo(
        format=BinaryFormat.ELF, machines=("x86_64",)
    )


@needs_linux_x64_gcc
def test_gcc_object_file_is_not_an_executable(gcc_outputs: dict[str, Path]) -> None:
    info = read_binary_info(gcc_outputs["obj"])
    assert isinstance(info, NotExecutable)
    assert "relocatable object" in info.reason


@needs_linux_x64_gcc
def test_gcc_executable_mismatches_other_machine_and_formats(gcc_outputs: dict[str, Path]) -> None:
    info = read_binary_info(gcc_outputs["exe"])
    assert isinstance(info, BinaryInfo)
    assert describe_mismatch(info, LINUX_ARM) == (
        "is an ELF x86_64 binary, but aarch64-unknown-linux-gnu needs ELF aarch64"
    )
    assert describe_mismatch(info, MAC_X64) == (
        "is an ELF x86_64 binary, but x86_64-apple-darwin needs Mach-O x86_64"
    )
    assert describe_mismatch(info, WIN_X64) == (
        "is an ELF x86_64 binary, but x86_64-pc-windows-msvc needs PE x86_64"
    )


@needs_linux_x64_gcc
def test_truncated_gcc_executable(gcc_outputs: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    cut.write_bytes(gcc_outputs["exe"].read_bytes()[:12])
    assert read_binary_info(cut) == NotExecutable(
        reason="not an executable: the header is truncated"
    )


def test_host_compiler_output_matches_the_host_target(gcc_outputs: dict[str, Path]) -> None:
    """Whatever this host is, gcc's output must match its own table entry and no other."""
    host = get_target(host_triple())
    info = read_binary_info(gcc_outputs["exe"])
    assert isinstance(info, BinaryInfo)
    matching = [t.triple for t in TARGETS.values() if describe_mismatch(info, t) is None]
    assert matching == [host.triple]


# --- every target, from a real cross compiler --------------------------------------------

GO_HELLO = 'package main\n\nimport "os"\n\nfunc main() { os.Stdout.WriteString("hi\\n") }\n'
GO_PLATFORMS = {  # triple -> (GOOS, GOARCH)
    "x86_64-unknown-linux-gnu": ("linux", "amd64"),
    "aarch64-unknown-linux-gnu": ("linux", "arm64"),
    "x86_64-apple-darwin": ("darwin", "amd64"),
    "aarch64-apple-darwin": ("darwin", "arm64"),
    "x86_64-pc-windows-msvc": ("windows", "amd64"),
    "aarch64-pc-windows-msvc": ("windows", "arm64"),
}


def go_build(work: Path, goos: str, goarch: str) -> Path:
    """A real executable for GOOS/GOARCH; Go cross-compiles pure Go with no extra toolchain."""
    (work / "go.mod").write_text("module hello\n\ngo 1.21\n")
    (work / "main.go").write_text(GO_HELLO)
    out = work / f"hello-{goos}-{goarch}"
    env = {
        **os.environ,
        "GOOS": goos,
        "GOARCH": goarch,
        "CGO_ENABLED": "0",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-trimpath",
    }
    subprocess.run(
        ["go", "build", "-o", str(out), "."],
        cwd=work,
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return out


@pytest.fixture(scope="module")
def go_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real executable per target triple (the first run compiles Go's runtime for each
    platform, ~10 s apiece; later runs hit Go's build cache)."""
    if shutil.which("go") is None:
        pytest.skip("go is not installed (it is the cross compiler these tests use)")
    work = tmp_path_factory.mktemp("go")
    return {triple: go_build(work, *platform) for triple, platform in GO_PLATFORMS.items()}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("triple", list(GO_PLATFORMS))
def test_cross_compiled_binary_matches_only_its_target(
    go_binaries: dict[str, Path], triple: str
) -> None:
    info = read_binary_info(go_binaries[triple])
    assert isinstance(info, BinaryInfo)
    target = get_target(triple)
    assert info == BinaryInfo(format=BinaryFormat(target.binary_format), machines=(target.arch,))
    matching = [t.triple for t in TARGETS.values() if describe_mismatch(info, t) is None]
    assert matching == [triple]


# --- ELF crafted -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "machine"),
    [
        (elf_header(machine=183), "aarch64"),
        (elf_header(machine=62), "x86_64"),
        (elf_header(machine=62, bits=32), "x32"),
        (elf_header(machine=3, bits=32, e_type=3), "i386"),
        (elf_header(machine=21, big_endian=True), "ELF64 e_machine 21"),  # ppc64
    ],
)
def test_elf_machines(header: bytes, machine: str) -> None:
    assert parse(header) == BinaryInfo(format=BinaryFormat.ELF, machines=(machine,))


def test_elf_aarch64_matches_only_linux_aarch64() -> None:
    info = parse(elf_header(machine=183))
    assert isinstance(info, BinaryInfo)
    assert describe_mismatch(info, LINUX_ARM) is None
    assert describe_mismatch(info, LINUX_X64) == (
        "is an ELF aarch64 binary, but x86_64-unknown-linux-gnu needs ELF x86_64"
    )


def test_elf_x32_is_not_x86_64() -> None:
    info = parse(elf_header(machine=62, bits=32))
    assert isinstance(info, BinaryInfo)
    assert describe_mismatch(info, LINUX_X64) is not None


def test_elf_crafted_header_agrees_with_file(tmp_path: Path) -> None:
    assert "ARM aarch64" in file_says(tmp_path, elf_header(machine=183))


def test_elf_core_dump_and_bad_class() -> None:
    core = parse(elf_header(machine=62, e_type=4))
    assert core == NotExecutable(reason="not an executable: ELF core dump (ET_CORE)")
    bad = bytearray(elf_header(machine=62))
    bad[4] = 9
    result = parse(bytes(bad))
    assert isinstance(result, NotExecutable)
    assert "invalid class 9" in result.reason


# --- Mach-O crafted ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cputype", "machine", "target"),
    [
        (CPU_X86_64, "x86_64", MAC_X64),
        (CPU_ARM64, "aarch64", MAC_ARM),
    ],
)
def test_macho_thin(cputype: int, machine: str, target: object) -> None:
    info = parse(macho_header(cputype=cputype))
    assert info == BinaryInfo(format=BinaryFormat.MACHO, machines=(machine,))
    assert describe_mismatch(info, target) is None  # type: ignore[arg-type]
    assert describe_mismatch(info, LINUX_X64) == (
        f"is a Mach-O {machine} binary, but x86_64-unknown-linux-gnu needs ELF x86_64"
    )


def test_macho_arm64_on_intel_mac_is_a_machine_mismatch() -> None:
    info = parse(macho_header(cputype=CPU_ARM64))
    assert isinstance(info, BinaryInfo)
    assert describe_mismatch(info, MAC_X64) == (
        "is a Mach-O aarch64 binary, but x86_64-apple-darwin needs Mach-O x86_64"
    )


def test_macho_crafted_header_agrees_with_file(tmp_path: Path) -> None:
    described = file_says(tmp_path, macho_header(cputype=CPU_ARM64))
    assert "Mach-O 64-bit" in described
    assert "arm64" in described
    assert "executable" in described


def test_macho_object_file_is_not_an_executable() -> None:
    assert parse(macho_header(cputype=CPU_X86_64, filetype=MH_OBJECT)) == NotExecutable(
        reason="not an executable: Mach-O object file (MH_OBJECT)"
    )


def test_macho_universal_matches_both_macs(tmp_path: Path) -> None:
    path = tmp_path / "universal"
    path.write_bytes(fat_binary([CPU_X86_64, CPU_ARM64]))
    info = read_binary_info(path)
    assert info == BinaryInfo(format=BinaryFormat.MACHO, machines=("x86_64", "aarch64"))
    assert info.describe() == "Mach-O universal x86_64+aarch64"
    assert describe_mismatch(info, MAC_X64) is None
    assert describe_mismatch(info, MAC_ARM) is None
    assert describe_mismatch(info, WIN_ARM) == (
        "is a Mach-O universal x86_64+aarch64 binary, but aarch64-pc-windows-msvc needs PE aarch64"
    )


def test_macho_universal_agrees_with_file(tmp_path: Path) -> None:
    described = file_says(tmp_path, fat_binary([CPU_X86_64, CPU_ARM64]))
    assert "universal binary with 2 architectures" in described


def test_macho_universal_slice_lying_about_its_cpu() -> None:
    result = parse(fat_binary([CPU_X86_64], declared=[CPU_ARM64]))
    assert result == NotExecutable(
        reason="not an executable: universal binary slice 0 is "
        "declared aarch64 but its header says x86_64"
    )


def test_macho_universal_slice_without_header() -> None:
    data = fat_binary([CPU_X86_64])
    broken = data[:4096] + b"\0" * 32
    assert parse(broken) == NotExecutable(
        reason="not an executable: universal binary slice 0 has no Mach-O header"
    )


def test_macho_universal_truncated_before_slice() -> None:
    assert parse(fat_binary([CPU_X86_64])[:100]) == NotExecutable(
        reason="not an executable: the header is truncated"
    )


def test_java_class_file_is_not_a_universal_binary() -> None:
    java = struct.pack(">IHH", 0xCAFEBABE, 0, 65) + bytes(32)  # Java 21 class file
    result = parse(java)
    assert isinstance(result, NotExecutable)
    assert "Java class file" in result.reason


# --- PE crafted --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "name", "target"),
    [
        (0x8664, "x86_64", WIN_X64),
        (0xAA64, "aarch64", WIN_ARM),
    ],
)
def test_pe_machines(machine: int, name: str, target: object) -> None:
    info = parse(pe_file(machine=machine))
    assert info == BinaryInfo(format=BinaryFormat.PE, machines=(name,))
    assert describe_mismatch(info, target) is None  # type: ignore[arg-type]


def test_pe_arm64_on_x64_windows_is_a_machine_mismatch() -> None:
    info = parse(pe_file(machine=0xAA64))
    assert isinstance(info, BinaryInfo)
    assert describe_mismatch(info, WIN_X64) == (
        "is a PE aarch64 binary, but x86_64-pc-windows-msvc needs PE x86_64"
    )


def test_pe_crafted_header_agrees_with_file(tmp_path: Path) -> None:
    described = file_says(tmp_path, pe_file(machine=0x8664))
    assert "PE32+ executable" in described
    assert "x86-64" in described


def test_pe_far_e_lfanew_is_followed() -> None:
    assert parse(pe_file(machine=0x8664, lfanew=0x1000)) == BinaryInfo(
        format=BinaryFormat.PE, machines=("x86_64",)
    )


def test_pe_not_marked_executable() -> None:
    result = parse(pe_file(machine=0x8664, characteristics=0x0020))
    assert isinstance(result, NotExecutable)
    assert "IMAGE_FILE_EXECUTABLE_IMAGE" in result.reason


@pytest.mark.parametrize(
    "data",
    [
        b"MZ" + bytes(100),  # e_lfanew 0 points back at "MZ"
        pe_file(machine=0x8664)[:0x82],  # cut inside the PE signature
        b"MZ\x90\x00",  # DOS stub shorter than e_lfanew's offset
    ],
)
def test_dos_header_without_pe_header(data: bytes) -> None:
    assert parse(data) == NotExecutable(
        reason="not an executable: DOS MZ header without a PE header"
    )


def test_pe_cut_inside_coff_header() -> None:
    assert parse(pe_file(machine=0x8664)[: 0x80 + 10]) == NotExecutable(
        reason="not an executable: the header is truncated"
    )


# --- not executables at all --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not an executable: only 0 bytes long"),
        (b"\x7fE", "not an executable: only 2 bytes long"),
        (b"\x7fELF\x02\x01", "not an executable: the header is truncated"),
        (b"#!/bin/sh\necho hi\n", "not a native executable: a script (starts with #!)"),
        (
            b"hello world",
            "not an executable: unknown header 68 65 6c 6c (expected ELF, Mach-O or PE)",
        ),
    ],
)
def test_short_and_garbage_files(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "thing"
    path.write_bytes(data)
    assert read_binary_info(path) == NotExecutable(reason=reason)


def test_missing_file_says_it_cannot_be_read(tmp_path: Path) -> None:
    result = read_binary_info(tmp_path / "absent")
    assert result == NotExecutable(reason="cannot read: No such file or directory")
