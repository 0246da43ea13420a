"""Cache entries as REAPI `ActionResult` messages, the form remote caches expect under /ac/.

bazel-remote (with its default settings) and other Remote Execution API caches parse
every action-cache upload as a `build.bazel.remote.execution.v2.ActionResult` and
refuse anything else with HTTP 400 (moon#2627 had the same bug). So what buildlib
uploads under `ac/<fingerprint>` is a real ActionResult:

- `output_files`: each regular output with its digest, executable bit and exact
  permission bits (`node_properties.unix_mode`), and each archived output (one
  tar.gz blob, marked by the node property `buildlib.archive`); `output_symlinks`:
  each symlink;
- `stdout_digest`: the step's log; `exit_code` 0 (only successes are stored);
- `execution_metadata.auxiliary_metadata`: a `Digest` naming buildlib's sealed entry
  (the same JSON the local store keeps, see store.py) in the CAS, and, when the
  uploader holds a signing key, its Ed25519 signature (`signing.py`).

A reader takes the sealed entry as the truth, after checking the signature and that
the ActionResult lists exactly the entry's files and log (`RemoteResult.mismatch`).

The protobuf classes are generated from the official remote_execution.proto
(`scripts/generate-reapi.sh`); this module, and with it the protobuf runtime, is
imported only when a remote cache is configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf import wrappers_pb2
from google.protobuf.message import DecodeError

from buildlib.cache._reapi.build.bazel.remote.execution.v2 import remote_execution_pb2 as reapi
from buildlib.cache.entries import CorruptEntryError, FileKind, OutputFile, is_digest
from buildlib.cache.signing import KEY_BYTES, SIGNATURE_BYTES, Signature
from buildlib.core.records import record

ENTRY_TYPE_PREFIX = "buildlib.dev/entry"
SIGNATURE_TYPE_PREFIX = "buildlib.dev/signature"
WORKER = "buildlib"
ARCHIVE_PROPERTY = "buildlib.archive"  # node property of an archived output's blob

# What a result says of each path: ("file", sha256, size, mode), ("archive", sha256,
# size) or ("symlink", target).
_Listing = Mapping[str, tuple[object, ...]]


@record
class RemoteResult:
    """What buildlib needs from a downloaded ActionResult."""

    meta_sha256: str  # the sealed entry's blob
    meta_size: int
    signature: Signature | None
    listing: _Listing
    log_sha256: str

    def mismatch(self, files: Sequence[OutputFile], log_sha256: str) -> str | None:
        """How the result disagrees with the sealed entry's records, or None."""
        expected = _listing(files)
        if set(expected) != set(self.listing):
            odd = sorted(set(expected) ^ set(self.listing))
            return f"different paths, e.g. {odd[0]}"
        for path, described in expected.items():
            if self.listing[path] != described:
                return f"{path} is described differently"
        if log_sha256 != self.log_sha256:
            return "different logs"
        return None


def encode_action_result(
    files: Sequence[OutputFile],
    *,
    log_sha256: str,
    log_size: int,
    meta_sha256: str,
    meta_size: int,
    signature: Signature | None,
) -> bytes:
    """The ActionResult uploaded for an entry (deterministic bytes)."""
    result = reapi.ActionResult(exit_code=0)
    for f in files:
        if f.kind is FileKind.FILE:
            out = result.output_files.add(path=f.path, is_executable=bool(f.mode & 0o111))
            out.digest.hash = f.sha256
            out.digest.size_bytes = f.size
            out.node_properties.unix_mode.value = f.mode
        elif f.kind is FileKind.ARCHIVE:
            out = result.output_files.add(path=f.path)
            out.digest.hash = f.sha256
            out.digest.size_bytes = f.size
            out.node_properties.properties.add(name=ARCHIVE_PROPERTY, value="tar+gzip")
        else:
            result.output_symlinks.add(path=f.path, target=f.target or "")
    result.stdout_digest.hash = log_sha256
    result.stdout_digest.size_bytes = log_size
    metadata = result.execution_metadata
    metadata.worker = WORKER
    metadata.auxiliary_metadata.add().Pack(
        reapi.Digest(hash=meta_sha256, size_bytes=meta_size), type_url_prefix=ENTRY_TYPE_PREFIX
    )
    if signature is not None:
        metadata.auxiliary_metadata.add().Pack(
            wrappers_pb2.BytesValue(value=signature.public_key + signature.value),
            type_url_prefix=SIGNATURE_TYPE_PREFIX,
        )
    return result.SerializeToString(deterministic=True)


def decode_action_result(data: bytes) -> RemoteResult:
    """Parse a downloaded result; CorruptEntryError if it is not one buildlib wrote."""
    try:
        result = reapi.ActionResult.FromString(data)
    except DecodeError:
        raise CorruptEntryError("not a REAPI ActionResult") from None
    meta: reapi.Digest | None = None
    signature: Signature | None = None
    for item in result.execution_metadata.auxiliary_metadata:
        prefix, _, name = item.type_url.rpartition("/")
        if prefix == ENTRY_TYPE_PREFIX and name == reapi.Digest.DESCRIPTOR.full_name:
            meta = reapi.Digest()
            item.Unpack(meta)
        elif (
            prefix == SIGNATURE_TYPE_PREFIX and name == wrappers_pb2.BytesValue.DESCRIPTOR.full_name
        ):
            raw = wrappers_pb2.BytesValue()
            item.Unpack(raw)
            if len(raw.value) != KEY_BYTES + SIGNATURE_BYTES:
                raise CorruptEntryError("its signature has the wrong length")
            signature = Signature(public_key=raw.value[:KEY_BYTES], value=raw.value[KEY_BYTES:])
    if meta is None or not is_digest(meta.hash):
        raise CorruptEntryError(
            "an action result without buildlib's entry (written by another tool?)"
        )
    listing: dict[str, tuple[object, ...]] = {}
    for out in result.output_files:
        if any(p.name == ARCHIVE_PROPERTY for p in out.node_properties.properties):
            listing[out.path] = ("archive", out.digest.hash, out.digest.size_bytes)
            continue
        mode = (
            out.node_properties.unix_mode.value
            if out.node_properties.HasField("unix_mode")
            else (0o755 if out.is_executable else 0o644)
        )
        listing[out.path] = ("file", out.digest.hash, out.digest.size_bytes, mode)
    for link in result.output_symlinks:
        listing[link.path] = ("symlink", link.target)
    return RemoteResult(
        meta_sha256=meta.hash,
        meta_size=meta.size_bytes,
        signature=signature,
        listing=listing,
        log_sha256=result.stdout_digest.hash,
    )


def _listing(files: Sequence[OutputFile]) -> dict[str, tuple[object, ...]]:
    return {f.path: _described(f) for f in files}


def _described(f: OutputFile) -> tuple[object, ...]:
    if f.kind is FileKind.FILE:
        return ("file", f.sha256, f.size, f.mode)
    if f.kind is FileKind.ARCHIVE:
        return ("archive", f.sha256, f.size)
    return ("symlink", f.target)
