"""Executable headers: which binary format and machine a file was linked for.

`verify.py` calls `read_binary_info` on every `executable` artifact and
`describe_mismatch` to compare it with the build's target, so a cross build that
silently produced a host binary (or an object file, or a shell script) fails
verification. Pure header parsing with `struct`: no `file(1)`, no `objdump`, so it
behaves the same on every host and for every target.

Machines are named like `Target.arch` ("x86_64", "aarch64"); other machines get a
descriptive name ("i386", "x32", "arm64_32", "ELF e_machine 8") so a mismatch
message can say what the file actually is.
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from buildlib.core.records import record
from buildlib.workspace.targets import Target


class BinaryFormat(enum.Enum):
    """Values equal `Target.binary_format`."""

    ELF = "elf"
    MACHO = "macho"
    PE = "pe"

    @property
    def label(self) -> str:
        return _FORMAT_LABELS[self]


_FORMAT_LABELS = {BinaryFormat.ELF: "ELF", BinaryFormat.MACHO: "Mach-O", BinaryFormat.PE: "PE"}


@record
class BinaryInfo:
    """A linked executable or shared library. `machines` has one entry, or one per
    slice of a Mach-O universal ("fat") binary."""

    format: BinaryFormat
    machines: tuple[str, ...]

    def describe(self) -> str:
        """E.g. "ELF x86_64", "Mach-O universal x86_64+aarch64"."""
        universal = " universal" if len(self.machines) > 1 else ""
        return f"{self.format.label}{universal} {'+'.join(self.machines)}"


@record
class NotExecutable:
    """The file is not a linked executable; `reason` says what it is instead."""

    reason: str


# ELF (System V ABI, "ELF header"): e_ident[EI_CLASS] 1 = 32-bit, 2 = 64-bit;
# e_ident[EI_DATA] 1 = little-endian, 2 = big-endian; e_type at 16, e_machine at 18.
_ELF_MAGIC = b"\x7fELF"
_ELF_CLASS_BITS = {1: 32, 2: 64}
_ELF_ENDIAN = {1: "<", 2: ">"}
_ELF_TYPES_LINKED = {2, 3}  # ET_EXEC, ET_DYN (PIE executables and shared objects)
_ELF_TYPE_NAMES = {
    0: "ELF file with no type (ET_NONE)",
    1: "ELF relocatable object file (ET_REL)",
    4: "ELF core dump (ET_CORE)",
}
# (e_machine, bits) -> name; EM_X86_64 = 62, EM_AARCH64 = 183, EM_386 = 3, EM_ARM = 40.
_ELF_MACHINES = {
    (62, 64): "x86_64",
    (62, 32): "x32",
    (183, 64): "aarch64",
    (183, 32): "aarch64_ilp32",
    (3, 32): "i386",
    (40, 32): "arm",
}

# Mach-O (<mach-o/loader.h>, <mach-o/fat.h>). Thin headers are in the file's byte order;
# fat headers are always big-endian.
_MH_MAGIC_64 = 0xFEEDFACF
_MH_MAGIC = 0xFEEDFACE
_FAT_MAGIC = 0xCAFEBABE
_FAT_MAGIC_64 = 0xCAFEBABF
# Java class files share 0xCAFEBABE; their next field (version, >= 45) is far above any
# real slice count, which is how file(1) tells them apart too.
_FAT_MAX_SLICES = 30
_MH_TYPES_LINKED = {2, 6, 8}  # MH_EXECUTE, MH_DYLIB, MH_BUNDLE (a napi .node on macOS)
_MH_TYPE_NAMES = {
    1: "Mach-O object file (MH_OBJECT)",
    4: "Mach-O core dump (MH_CORE)",
    10: "Mach-O debug symbols (MH_DSYM)",
}
_MH_CPUS = {
    0x01000007: "x86_64",
    0x0100000C: "aarch64",
    7: "i386",
    12: "arm",
    0x0200000C: "arm64_32",
}

# PE/COFF: "MZ" DOS stub, e_lfanew (u32 at 0x3C) -> "PE\0\0", then the COFF header:
# Machine u16, ..., Characteristics u16 at +18.
_PE_LFANEW_OFFSET = 0x3C
_PE_MACHINES = {
    0x8664: "x86_64",
    0xAA64: "aarch64",
    0x014C: "i386",
    0x01C0: "arm",
    0x01C4: "arm",
    0xA641: "arm64ec",
}
_IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002


class _Truncated(Exception):  # noqa: N818 - internal control flow, never escapes this module
    pass


def _read_at(stream: BinaryIO, offset: int, size: int) -> bytes:
    stream.seek(offset)
    data = stream.read(size)
    if len(data) < size:
        raise _Truncated
    return data


def _u16(stream: BinaryIO, offset: int, endian: str) -> int:
    value: int = struct.unpack(endian + "H", _read_at(stream, offset, 2))[0]
    return value


def _u32(stream: BinaryIO, offset: int, endian: str) -> int:
    value: int = struct.unpack(endian + "I", _read_at(stream, offset, 4))[0]
    return value


def _u64(stream: BinaryIO, offset: int, endian: str) -> int:
    value: int = struct.unpack(endian + "Q", _read_at(stream, offset, 8))[0]
    return value


def parse_binary(stream: BinaryIO) -> BinaryInfo | NotExecutable:
    """The format and machine(s) of the executable in `stream` (seekable, read from 0)."""
    head = stream.read(4)
    if len(head) < 4:
        return NotExecutable(reason=f"not an executable: only {len(head)} bytes long")
    parser = _PARSERS.get(head) or _PARSERS.get(head[:2])
    if parser is None:
        return NotExecutable(
            reason=f"not an executable: unknown header {head.hex(' ')} (expected ELF, Mach-O or PE)"
        )
    try:
        return parser(stream)
    except _Truncated:
        return NotExecutable(reason="not an executable: the header is truncated")


def read_binary_info(path: Path) -> BinaryInfo | NotExecutable:
    """The format and machine(s) of the executable at `path`; unreadable files say why."""
    try:
        with path.open("rb") as stream:
            return parse_binary(stream)
    except OSError as exc:
        return NotExecutable(reason=f"cannot read: {exc.strerror or exc}")


def _parse_elf(stream: BinaryIO) -> BinaryInfo | NotExecutable:
    ident = _read_at(stream, 4, 2)
    bits, endian = _ELF_CLASS_BITS.get(ident[0]), _ELF_ENDIAN.get(ident[1])
    if bits is None or endian is None:
        return NotExecutable(
            reason=f"not an executable: ELF header with invalid class "
            f"{ident[0]} or byte order {ident[1]}"
        )
    e_type = _u16(stream, 16, endian)
    if e_type not in _ELF_TYPES_LINKED:
        return NotExecutable(
            reason="not an executable: "
            + _ELF_TYPE_NAMES.get(e_type, f"ELF file of type {e_type:#x}")
        )
    e_machine = _u16(stream, 18, endian)
    name = _ELF_MACHINES.get((e_machine, bits), f"ELF{bits} e_machine {e_machine}")
    return BinaryInfo(format=BinaryFormat.ELF, machines=(name,))


def _macho_cpu(cputype: int) -> str:
    return _MH_CPUS.get(cputype, f"cputype {cputype:#x}")


def _parse_macho_slice(stream: BinaryIO, *, offset: int, endian: str) -> BinaryInfo | NotExecutable:
    # mach_header(_64): magic, cputype, cpusubtype, filetype, ... (all u32)
    cputype = _u32(stream, offset + 4, endian)
    filetype = _u32(stream, offset + 12, endian)
    if filetype not in _MH_TYPES_LINKED:
        return NotExecutable(
            reason="not an executable: "
            + _MH_TYPE_NAMES.get(filetype, f"Mach-O file of type {filetype:#x}")
        )
    return BinaryInfo(format=BinaryFormat.MACHO, machines=(_macho_cpu(cputype),))


def _parse_fat(stream: BinaryIO, *, wide: bool) -> BinaryInfo | NotExecutable:
    count = _u32(stream, 4, ">")
    if count == 0 or count > _FAT_MAX_SLICES:
        return NotExecutable(
            reason=f"not an executable: 0xCAFEBABE header with {count} slices (a Java class file?)"
        )
    # fat_arch: cputype, cpusubtype, offset, size, align (u32 each, 20 bytes);
    # fat_arch_64: cputype, cpusubtype, offset u64, size u64, align, reserved (32 bytes).
    entry_size = 32 if wide else 20
    machines: list[str] = []
    for index in range(count):
        entry = 8 + index * entry_size
        slice_offset = _u64(stream, entry + 8, ">") if wide else _u32(stream, entry + 8, ">")
        magic = _u32(stream, slice_offset, "<")
        endian = "<" if magic in (_MH_MAGIC_64, _MH_MAGIC) else ">"
        if _u32(stream, slice_offset, endian) not in (_MH_MAGIC_64, _MH_MAGIC):
            return NotExecutable(
                reason=f"not an executable: universal binary slice {index} has no Mach-O header"
            )
        sliced = _parse_macho_slice(stream, offset=slice_offset, endian=endian)
        if isinstance(sliced, NotExecutable):
            return sliced
        declared = _macho_cpu(_u32(stream, entry, ">"))
        if sliced.machines != (declared,):
            return NotExecutable(
                reason=f"not an executable: universal binary slice {index} "
                f"is declared {declared} but its header says {sliced.machines[0]}"
            )
        machines.append(declared)
    return BinaryInfo(format=BinaryFormat.MACHO, machines=tuple(machines))


def _parse_pe(stream: BinaryIO) -> BinaryInfo | NotExecutable:
    try:
        lfanew = _u32(stream, _PE_LFANEW_OFFSET, "<")
        signature = _read_at(stream, lfanew, 4)
    except _Truncated:
        return NotExecutable(reason="not an executable: DOS MZ header without a PE header")
    if signature != b"PE\0\0":
        return NotExecutable(reason="not an executable: DOS MZ header without a PE header")
    machine = _u16(stream, lfanew + 4, "<")
    characteristics = _u16(stream, lfanew + 4 + 18, "<")
    if not characteristics & _IMAGE_FILE_EXECUTABLE_IMAGE:
        return NotExecutable(
            reason="not an executable: PE image not marked executable "
            "(IMAGE_FILE_EXECUTABLE_IMAGE unset; the link failed?)"
        )
    name = _PE_MACHINES.get(machine, f"PE machine {machine:#06x}")
    return BinaryInfo(format=BinaryFormat.PE, machines=(name,))


def _script(_stream: BinaryIO) -> NotExecutable:
    return NotExecutable(reason="not a native executable: a script (starts with #!)")


# Keyed by the first 4 bytes, or the first 2 for "MZ" and "#!".
_PARSERS: dict[bytes, Callable[[BinaryIO], BinaryInfo | NotExecutable]] = {
    _ELF_MAGIC: _parse_elf,
    b"MZ": _parse_pe,
    b"#!": _script,
    struct.pack(">I", _FAT_MAGIC): functools.partial(_parse_fat, wide=False),
    struct.pack(">I", _FAT_MAGIC_64): functools.partial(_parse_fat, wide=True),
    **{
        struct.pack(endian + "I", magic): functools.partial(
            _parse_macho_slice, offset=0, endian=endian
        )
        for magic in (_MH_MAGIC_64, _MH_MAGIC)
        for endian in ("<", ">")
    },
}


def describe_mismatch(info: BinaryInfo, target: Target) -> str | None:
    """Why `info` cannot run on `target`, or None when it matches.

    A universal Mach-O matches when one of its slices is the target's machine.
    """
    wanted = BinaryFormat(target.binary_format)
    if info.format is wanted and target.arch in info.machines:
        return None
    described = info.describe()
    article = "an" if described[0] in "AEIOU" else "a"
    return (
        f"is {article} {described} binary, but {target.triple} needs {wanted.label} {target.arch}"
    )
