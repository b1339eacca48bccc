"""``pfs``: make, read, inspect and check Gramine encrypted files from the command line.

Compatible with Gramine's ``gramine-sgx-pf-crypt`` where they overlap (``-w/--wrap-key``,
``-i/--input``, ``-o/--output``, ``-V/--verify``, ``-v/--verbose``; files or folder trees).
Subcommands: gen-key, encrypt, decrypt, info, verify, tamper, rekey. ``pfs-encrypt`` is
``pfs encrypt``.

Every error is one line on stderr (``pfs: error: ...``; ``--debug`` adds the traceback); exit
status 2 for usage errors, 1 for failures. Keys are only ever read from files, never printed.
Outputs appear only when complete (see :class:`tools.cli_support.AtomicOutput`).
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import click

from pal import HostFile
from pfs.errors import CorruptedNodeError
from pfs.inspect import read_full_info, read_header_info
from pfs.keys import generate_key_file
from pfs.paths import bound_path_for, normalize_bound_path
from pfs.protected_file import ProtectedFile
from pfs.storage import BorrowedStorage
from pfs.stream import decrypt_stream, encrypt_stream

from .cli_support import (
    AtomicOutput,
    CliError,
    FileJob,
    FileResult,
    Progress,
    UsageProblem,
    check_output_target,
    describe_error,
    echo_error,
    is_inside,
    make_dirs,
    prune_dirs,
    require_existing,
    require_file,
    run_file_jobs,
    walk_files,
)
from .pfs_command import (
    PfsCommand,
    PfsGroup,
    Settings,
    _load_key,
    _positive_jobs,
    _print_failure,
    _report_failures,
    _settings,
    bind_prefix_check_option,
    debug_option,
    force_option,
    jobs_option,
    no_fsync_option,
    quiet_option,
    verbose_option,
    wrap_key_option,
)
from .pfs_mount_cli import mount, umount

REKEY_CHUNK = 1 << 20


# ---------------------------------------------------------------------- per-file operations
# Top-level functions: they run in worker processes too.

def _stream_to_output(job: FileJob, stream: Callable[..., int], *, progress: Callable[[int], None] | None,
                      key: bytes, force: bool, jobs: int, sync: bool) -> int:
    """Run ``stream(src, dst, key, job.path, ...)`` from ``job.src`` into a temporary file that
    replaces ``job.dst`` only on success; return the plaintext size."""
    assert job.dst is not None
    require_file(job.src, "input")
    check_output_target(job.dst, force=force)
    try:
        src = HostFile(job.src)
    except OSError as exc:
        raise CliError(f"can't read input '{job.src}': {exc.strerror}") from None
    with src, AtomicOutput(job.dst, force=force, sync=sync) as out:
        size = stream(src, out.file, key, job.path, jobs=jobs, progress=progress)
        out.commit()
    return size


def op_encrypt(job: FileJob, *, progress: Callable[[int], None] | None, key: bytes, force: bool,
               jobs: int, sync: bool = True) -> int:
    """Encrypt ``job.src`` to ``job.dst`` bound to ``job.path``; return the plaintext size."""
    assert job.path is not None
    return _stream_to_output(job, encrypt_stream, progress=progress, key=key, force=force, jobs=jobs, sync=sync)


def op_decrypt(job: FileJob, *, progress: Callable[[int], None] | None, key: bytes, force: bool,
               jobs: int, sync: bool = True) -> int:
    """Decrypt ``job.src`` to ``job.dst`` (checking ``job.path`` if set); return the size."""
    return _stream_to_output(job, decrypt_stream, progress=progress, key=key, force=force, jobs=jobs, sync=sync)


def op_verify(job: FileJob, *, progress: Callable[[int], None] | None, key: bytes, jobs: int) -> int:
    """Authenticate every node of ``job.src``; return the plaintext size."""
    require_file(job.src, "file")
    try:
        src = HostFile(job.src)
    except OSError as exc:
        raise CliError(f"can't read '{job.src}': {exc.strerror}") from None
    with src:
        try:
            return decrypt_stream(src, None, key, job.path, jobs=jobs, progress=progress)
        except CorruptedNodeError as exc:
            # The stream walks the tree depth-first (and in batches with jobs > 1), so the node
            # it reports need not be the first bad one in file order: look before it.
            earlier = _first_bad_node_before(src, key, exc.plaintext_range[0])
            raise (earlier or exc) from None


def _first_bad_node_before(src: HostFile, key: bytes, limit: int) -> CorruptedNodeError | None:
    """The first node (in file order) that fails authentication below plaintext offset ``limit``."""
    pf = ProtectedFile.open(BorrowedStorage(src), key, None)
    try:
        offset = 0
        while offset < limit:
            n = min(REKEY_CHUNK, limit - offset)
            try:
                pf.read(offset, n)
            except CorruptedNodeError as exc:
                return exc
            offset += n
    finally:
        pf.close()
    return None


def op_rekey(job: FileJob, *, progress: Callable[[int], None] | None, key: bytes, new_key: bytes) -> str:
    """Re-encrypt ``job.src`` in place under ``new_key``, keeping its bound path.

    The plaintext only ever exists in memory: the file is read through a ProtectedFile with the
    old key and written through a ProtectedFile with the new key into a temporary file in the
    same folder, which is fsynced and then atomically replaces the original.
    """
    require_file(job.src, "file")
    target = os.path.realpath(job.src)  # replace the file a symlink points to, not the link
    st = os.stat(target)
    try:
        storage = HostFile(target)
    except OSError as exc:
        raise CliError(f"can't read '{job.src}': {exc.strerror}") from None
    try:
        old_pf = ProtectedFile.open(storage, key, None)
    except BaseException:
        storage.close()
        raise
    with old_pf as old:
        bound = bytes(old.metadata.path)
        size = old.size
        with AtomicOutput(target, force=True, mode=st.st_mode & 0o7777) as out:
            new = ProtectedFile.create(BorrowedStorage(out.file), new_key, bound)
            try:
                offset = 0
                while offset < size:
                    chunk = old.read(offset, REKEY_CHUNK)
                    if not chunk:
                        break
                    new.write(offset, chunk)
                    offset += len(chunk)
                    if progress:
                        progress(len(chunk))
                new.flush()
            finally:
                new.close()
            if offset != size:
                raise CliError(f"{job.src}: read {offset} of {size} bytes; file left unchanged")
            if os.geteuid() == 0:
                os.fchown(out.file.fd, st.st_uid, st.st_gid)
            out.commit()
    return bound.decode(errors="replace")


# ---------------------------------------------------------------------- the command group

@click.group(cls=PfsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@debug_option
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Gramine encrypted files (format v2.0, reads v1.0): make keys, encrypt, decrypt, inspect."""
    _settings(ctx, debug)


@cli.command("gen-key", cls=PfsCommand)
@click.option("-w", "--wrap-key", "wrap_key", required=True, metavar="FILE", help="Key file to create.")
@force_option
@debug_option
@click.pass_context
def gen_key(ctx: click.Context, wrap_key: str, force: bool, debug: bool) -> int:
    """Create a new random 16-byte wrap key file (mode 0600)."""
    _settings(ctx, debug)
    generate_key_file(wrap_key, force=force)
    click.echo(f"wrote a new 16-byte key to {wrap_key} (mode 0600)")
    return 0


def _output_for_file(input_path: str, output: str) -> None:
    """Checks for a single-file run: the output must not be a folder."""
    if os.path.isdir(output):
        raise CliError(f"output '{output}' is a folder but the input '{input_path}' is a file; "
                       "give the path of the output file", code=2)


def _output_for_tree(input_path: str, output: str) -> None:
    if os.path.exists(output) and not os.path.isdir(output):
        raise CliError(f"output '{output}' is a file but the input '{input_path}' is a folder; "
                       "give an output folder", code=2)


def _run_tree(op: Callable[..., Any], jobs: list[FileJob], params: dict[str, Any], *, workers: int,
              quiet: bool, label: str, created: list[str],
              on_ok: Callable[[FileResult], None], settings: Settings, verb: str) -> int:
    """Make the output folders, run ``op`` over ``jobs``, report; return the exit status."""
    results: list[FileResult] = []
    runnable: list[FileJob] = []
    for job in jobs:
        if job.dst is not None:
            try:
                make_dirs(os.path.dirname(job.dst), created)
            except CliError as exc:
                result = FileResult(job, False, message=str(exc))
                _print_failure(result, settings)
                results.append(result)
                continue
        runnable.append(job)
    total = sum(j.weight for j in runnable)
    try:
        with Progress(total, label, enabled=not quiet) as bar:
            for result in run_file_jobs(op, runnable, params, workers=workers, progress=bar):
                results.append(result)
                if result.ok:
                    on_ok(result)
                else:
                    _print_failure(result, settings)
    finally:
        prune_dirs(created)
    return _report_failures(results, settings, verb)


def _make_output_root(output: str, created: list[str]) -> None:
    """Create the output folder of a tree run (one error if that's impossible, nothing left)."""
    try:
        make_dirs(output, created)
    except CliError:
        prune_dirs(created)
        raise


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _encrypt(ctx: click.Context, wrap_key: str, input_path: str, output: str, bind_path: str | None,
             bind_prefix: str | None, jobs: int, quiet: bool, verbose: bool, force: bool, no_fsync: bool,
             debug: bool, manifest: str | None = None) -> int:
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    if bind_path is not None and bind_prefix is not None:
        raise UsageProblem("give either --bind-path or --bind-prefix, not both")
    for value, flag in ((bind_path, "--bind-path"), (bind_prefix, "--bind-prefix")):
        if value is not None and not value:
            raise UsageProblem(f"{flag} must not be empty")
    require_existing(input_path, "input")
    key = _load_key(wrap_key)
    if manifest is not None:  # bind as the manifest's encrypted mount will open each output
        if bind_path is not None or bind_prefix is not None:
            raise UsageProblem("give --manifest or --bind-path/--bind-prefix, not both")
        from libos.binding import bind_options_from_manifest

        bind_path, bind_prefix = bind_options_from_manifest(manifest, output, tree=os.path.isdir(input_path))
    tree = os.path.isdir(input_path)
    created: list[str] = []
    if tree:
        if bind_path is not None:
            raise UsageProblem(f"--bind-path names the path of one file, but input '{input_path}' is a "
                               "folder; use --bind-prefix for a tree")
        _output_for_tree(input_path, output)
        skip = output if os.path.isdir(output) and is_inside(output, input_path) else None
        rels = walk_files(input_path, skip=skip)
        if not rels:
            click.echo(f"pfs: note: no files under '{input_path}'; nothing to do", err=True)
            return 0
        _make_output_root(output, created)
        file_jobs = []
        for rel in rels:
            dst = os.path.join(output, rel)
            bound = bound_path_for(dst, bind_prefix=bind_prefix, relative_to=output)
            file_jobs.append(FileJob(os.path.join(input_path, rel), dst, bound,
                                     _file_size(os.path.join(input_path, rel))))
    else:
        _output_for_file(input_path, output)
        bound = bound_path_for(output, bind_path=bind_path, bind_prefix=bind_prefix)
        file_jobs = [FileJob(input_path, output, bound, _file_size(input_path))]

    def on_ok(result: FileResult) -> None:
        if not quiet:
            extra = f" ({result.value} bytes)" if verbose else ""
            click.echo(f"{result.job.dst} -> bound to {result.job.path}{extra}")

    return _run_tree(op_encrypt, file_jobs, {"key": key, "force": force, "jobs": jobs, "sync": not no_fsync},
                     workers=jobs if tree else 1, quiet=quiet, label="encrypting", created=created,
                     on_ok=on_ok, settings=settings, verb="encrypt")


def _encrypt_options(func: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        wrap_key_option,
        click.option("-i", "--input", "input_path", required=True, metavar="IN",
                     help="Plaintext file, or folder tree to encrypt."),
        click.option("-o", "--output", "output", required=True, metavar="OUT",
                     help="Encrypted file, or folder (the output tree mirrors the input tree)."),
        click.option("--bind-path", metavar="PATH",
                     help="Bind the file to PATH (single file; default: the normalized output path)."),
        click.option("--bind-prefix", metavar="PREFIX",
                     help="Bind each file to PREFIX/<path relative to the output root> "
                          "(PREFIX/<basename> for a single file)."),
        click.option("--manifest", metavar="MANIFEST",
                     help="Bind each output as the encrypted mount of Gramine manifest MANIFEST that covers "
                          "it will open it: the mount's URI path + the output's path below it."),
        jobs_option, quiet_option, verbose_option, force_option, no_fsync_option, debug_option,
        click.pass_context,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


@cli.command("encrypt", cls=PfsCommand)
@_encrypt_options
def encrypt(ctx: click.Context, **kwargs: Any) -> int:
    """Encrypt a file or a folder tree; print the path each file is bound to.

    The bound path is what a Gramine manifest must use for the file (by default the output
    path, normalized: './enc//a' -> 'enc/a').
    """
    return _encrypt(ctx, **kwargs)


@click.command("pfs-encrypt", cls=PfsCommand, context_settings={"help_option_names": ["-h", "--help"]})
@_encrypt_options
def encrypt_standalone(ctx: click.Context, **kwargs: Any) -> int:
    """Encrypt a file or a folder tree (same as 'pfs encrypt')."""
    return _encrypt(ctx, **kwargs)


@cli.command("decrypt", cls=PfsCommand)
@wrap_key_option
@click.option("-i", "--input", "input_path", required=True, metavar="IN",
              help="Encrypted file, or folder tree to decrypt.")
@click.option("-o", "--output", "output", required=True, metavar="OUT", help="Plaintext file or folder.")
@click.option("-V", "--verify", "verify_path", is_flag=True,
              help="Check that each file is bound to its normalized input path (as Gramine does).")
@click.option("--expect-path", metavar="PATH", help="Check that the file is bound to PATH (single file).")
@bind_prefix_check_option
@jobs_option
@quiet_option
@verbose_option
@force_option
@no_fsync_option
@debug_option
@click.pass_context
def decrypt(ctx: click.Context, wrap_key: str, input_path: str, output: str, verify_path: bool,
            expect_path: str | None, bind_prefix: str | None, jobs: int, quiet: bool, verbose: bool, force: bool,
            no_fsync: bool, debug: bool) -> int:
    """Decrypt and authenticate a file or a folder tree; a failed file leaves no output."""
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    _one_path_check(verify_path, expect_path, bind_prefix)
    require_existing(input_path, "input")
    key = _load_key(wrap_key)
    tree = os.path.isdir(input_path)
    created: list[str] = []
    if tree:
        if expect_path is not None:
            raise UsageProblem(f"--expect-path names the path of one file, but input '{input_path}' is a "
                               "folder; use -V to check each file against its own path")
        _output_for_tree(input_path, output)
        skip = output if os.path.isdir(output) and is_inside(output, input_path) else None
        rels = walk_files(input_path, skip=skip)
        if not rels:
            click.echo(f"pfs: note: no files under '{input_path}'; nothing to do", err=True)
            return 0
        _make_output_root(output, created)
        file_jobs = []
        for rel in rels:
            src = os.path.join(input_path, rel)
            expected = _expected_path(src, input_path, verify_path, None, bind_prefix)
            file_jobs.append(FileJob(src, os.path.join(output, rel), expected, _file_size(src)))
    else:
        _output_for_file(input_path, output)
        expected = _expected_path(input_path, None, verify_path, expect_path, bind_prefix)
        file_jobs = [FileJob(input_path, output, expected, _file_size(input_path))]

    def on_ok(result: FileResult) -> None:
        if not quiet:
            checked = f" (bound path '{result.job.path}' verified)" if result.job.path is not None else ""
            extra = f", {result.value} bytes" if verbose else ""
            click.echo(f"{result.job.src} -> {result.job.dst}{checked}{extra}")

    return _run_tree(op_decrypt, file_jobs, {"key": key, "force": force, "jobs": jobs, "sync": not no_fsync},
                     workers=jobs if tree else 1, quiet=quiet, label="decrypting", created=created,
                     on_ok=on_ok, settings=settings, verb="decrypt")


def _expand(paths: Sequence[str], role: str) -> list[tuple[str, str | None]]:
    """Files named by ``paths`` (folders walked): ``(path, the tree it came from or None)``."""
    out: list[tuple[str, str | None]] = []
    for path in paths:
        require_existing(path, role)
        if os.path.isdir(path):
            out.extend((os.path.join(path, rel), path) for rel in walk_files(path))
        else:
            out.append((path, None))
    return out


def _one_path_check(verify_path: bool, expect_path: str | None, bind_prefix: str | None) -> None:
    if sum((verify_path, expect_path is not None, bind_prefix is not None)) > 1:
        raise UsageProblem("give only one of -V, --expect-path and --bind-prefix")


def _expected_path(src: str, tree: str | None, verify_path: bool, expect_path: str | None,
                   bind_prefix: str | None) -> str | None:
    """The path ``src`` must be bound to, or None when no check was asked for."""
    if expect_path is not None:
        return expect_path
    if bind_prefix is not None:
        return bound_path_for(src, bind_prefix=bind_prefix, relative_to=tree)
    return normalize_bound_path(src) if verify_path else None


def _format_info(info: dict[str, Any]) -> list[str]:
    flags = info["flags"]
    pending = " (update pending: an interrupted write needs recovery)" if info["update_pending"] else ""
    nodes = info["disk_nodes"]
    lines = [
        f"{info['path']}:",
        f"  format version   {info['format_version']}",
        f"  flags            0x{flags:02x}{pending}",
        f"  on-disk size     {info['disk_size']} bytes ({nodes} node{'s' if nodes != 1 else ''})",
        f"  node count       {info['node_count_note']}",
    ]
    if "bound_path" in info:
        depth = info["tree_depth"]
        tree = ("none (all data in the metadata node)" if depth is None else
                f"depth {depth}: {info['mht_nodes']} MHT + {info['data_nodes']} data nodes")
        lines += [
            f"  bound path       {info['bound_path']}",
            f"  plaintext size   {info['plaintext_size']} bytes",
            f"  Merkle tree      {tree}",
        ]
        if info["trailing_nodes"]:
            lines.append(f"  trailing nodes   {info['trailing_nodes']} (past what the size needs; ignored)")
    return lines


@cli.command("info", cls=PfsCommand)
@click.argument("files", nargs=-1, required=True)
@click.option("-w", "--wrap-key", "wrap_key", metavar="FILE",
              help="Key file: adds the bound path, plaintext size and tree shape.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per file.")
@debug_option
@click.pass_context
def info(ctx: click.Context, files: tuple[str, ...], wrap_key: str | None, as_json: bool, debug: bool) -> int:
    """Show what an encrypted file's header says (and, with a key, its metadata)."""
    settings = _settings(ctx, debug)
    key = _load_key(wrap_key) if wrap_key is not None else None
    records: list[dict[str, Any]] = []
    failed = 0
    for path, _ in _expand(files, "file"):
        try:
            with HostFile(path) as storage:
                record = read_full_info(storage, key) if key is not None else read_header_info(storage)
        except Exception as exc:
            failed += 1
            if settings.debug:
                traceback.print_exc()
            message = describe_error(exc)
            if as_json:
                records.append({"path": path, "error": message})
            echo_error(message)
            continue
        record["path"] = path
        records.append(record)
        if not as_json:
            click.echo("\n".join(_format_info(record)))
    if as_json:
        click.echo(json.dumps(records, indent=2))
    if failed and len(records) > 1:
        echo_error(f"{failed} of {len(records)} files could not be read")
    return 1 if failed else 0


@cli.command("verify", cls=PfsCommand)
@wrap_key_option
@click.argument("paths", nargs=-1, required=True)
@click.option("--expect-path", metavar="PATH", help="Check that the (single) file is bound to PATH.")
@click.option("-V", "--verify-path", "verify_path", is_flag=True,
              help="Check that each file is bound to its own normalized path.")
@bind_prefix_check_option
@jobs_option
@quiet_option
@verbose_option
@debug_option
@click.pass_context
def verify(ctx: click.Context, wrap_key: str, paths: tuple[str, ...], expect_path: str | None,
           verify_path: bool, bind_prefix: str | None, jobs: int, quiet: bool, verbose: bool, debug: bool) -> int:
    """Authenticate every node of every file (files or trees); report each bad file."""
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    _one_path_check(verify_path, expect_path, bind_prefix)
    key = _load_key(wrap_key)
    found = _expand(paths, "path")
    if expect_path is not None and (len(found) != 1 or found[0][1] is not None):
        raise UsageProblem("--expect-path applies to a single file; use -V to check each file's own path")
    file_jobs = []
    for path, tree in found:
        expected = _expected_path(path, tree, verify_path, expect_path, bind_prefix)
        file_jobs.append(FileJob(path, None, expected, _file_size(path)))
    results: list[FileResult] = []
    with Progress(sum(j.weight for j in file_jobs), "verifying", enabled=not quiet) as bar:
        for result in run_file_jobs(op_verify, file_jobs, {"key": key, "jobs": jobs},
                                    workers=jobs if len(file_jobs) > 1 else 1, progress=bar):
            results.append(result)
            if not result.ok:
                if settings.debug and result.trace:
                    click.echo(result.trace.rstrip(), err=True)
                click.echo(f"BAD  {result.message}")
            elif verbose:
                click.echo(f"ok   {result.job.src} ({result.value} bytes)")
    bad = sum(not r.ok for r in results)
    click.echo(f"{len(results) - bad} files ok" + (f", {bad} bad" if bad else ""))
    if bad:
        echo_error(f"{bad} of {len(results)} files failed verification")
        return 1
    return 0


@cli.command("tamper", cls=PfsCommand)
@wrap_key_option
@click.option("-i", "--input", "input_path", required=True, metavar="FILE", help="A valid encrypted file.")
@click.option("-o", "--output", "output", required=True, metavar="DIR", help="Folder for the variants.")
@force_option
@quiet_option
@debug_option
@click.pass_context
def tamper(ctx: click.Context, wrap_key: str, input_path: str, output: str, force: bool, quiet: bool,
           debug: bool) -> int:
    """Write corrupted variants of an encrypted file (like Gramine's pf_tamper), for testing readers."""
    _settings(ctx, debug)
    require_file(input_path, "input", folder_hint="; give one encrypted file")
    if os.path.exists(output) and not os.path.isdir(output):
        raise CliError(f"output '{output}' is a file; give a folder for the variants", code=2)
    key = _load_key(wrap_key)
    created: list[str] = []
    make_dirs(output, created)
    try:
        from pfs.tamper import make_tampered_variants  # rarely used: keep it off the start-up path

        variants = make_tampered_variants(input_path, key, output, overwrite=force)
    finally:
        prune_dirs(created)
    if not quiet:
        width = max((len(n) for n, _ in variants), default=0)
        for name, description in variants:
            click.echo(f"{name.ljust(width)}  {description}")
    click.echo(f"wrote {len(variants)} variants to {output}")
    return 0


@cli.command("rekey", cls=PfsCommand)
@wrap_key_option
@click.option("--new-key", "new_key", required=True, metavar="FILE", help="Key file of the new key.")
@click.argument("paths", nargs=-1, required=True)
@jobs_option
@quiet_option
@verbose_option
@debug_option
@click.pass_context
def rekey(ctx: click.Context, wrap_key: str, new_key: str, paths: tuple[str, ...], jobs: int, quiet: bool,
          verbose: bool, debug: bool) -> int:
    """Re-encrypt files in place under a new key, keeping their bound paths (atomic per file)."""
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    old = _load_key(wrap_key)
    new = _load_key(new_key, what="new key")
    file_jobs = [FileJob(path, None, None, _file_size(path)) for path, _ in _expand(paths, "path")]

    def on_ok(result: FileResult) -> None:
        if not quiet:
            click.echo(f"{result.job.src}: re-encrypted under the new key (bound to {result.value})")

    return _run_tree(op_rekey, file_jobs, {"key": old, "new_key": new}, workers=jobs, quiet=quiet,
                     label="re-encrypting", created=[], on_ok=on_ok, settings=settings, verb="re-encrypt")


# ---------------------------------------------------------------------- entry points

cli.add_command(mount)
cli.add_command(umount)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``pfs``."""
    cli.main(args=argv, prog_name="pfs")


def encrypt_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``pfs-encrypt`` (the same as ``pfs encrypt``)."""
    encrypt_standalone.main(args=argv, prog_name="pfs-encrypt")


if __name__ == "__main__":
    main()
