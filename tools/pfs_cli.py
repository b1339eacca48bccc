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
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import click

from pal import HostFile
from pfs.inspect import read_full_info, read_header_info
from pfs.keys import generate_key_file
from pfs.paths import bound_path_for, normalize_bound_path

from .cli_support import (
    CliError,
    FileJob,
    FileResult,
    Progress,
    UsageProblem,
    describe_error,
    echo_error,
    require_existing,
    require_file,
    run_file_jobs,
)
from .file_ops import STDIO, op_decrypt, op_encrypt, op_rekey, op_verify, trailing_message
from .outputs import check_output_target, make_dirs, prune_dirs
from .pfs_command import (
    PfsFileCommand,
    PfsGroup,
    _load_key,
    _positive_jobs,
    _settings,
    bind_prefix_check_option,
    debug_option,
    follow_symlinks_option,
    force_option,
    jobs_option,
    no_fsync_option,
    quiet_option,
    strict_option,
    verbose_option,
    wrap_key_option,
)
from .pfs_mount_cli import mount, umount
from .tree_run import (
    distinct_files,
    expand,
    file_size,
    make_output_root,
    not_empty,
    nothing_to_do,
    output_for_file,
    run_tree,
    walk_input_tree,
)

# ---------------------------------------------------------------------- the command group

@click.group(cls=PfsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@debug_option
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Gramine encrypted files (format v2.0, reads v1.0): make keys, encrypt, decrypt, inspect."""
    _settings(ctx, debug)


@cli.command("gen-key", cls=PfsFileCommand)
@click.option("-w", "--wrap-key", "wrap_key", required=True, metavar="FILE", help="Key file to create.")
@force_option
@debug_option
@click.pass_context
def gen_key(ctx: click.Context, wrap_key: str, force: bool, debug: bool) -> int:
    """Create a new random 16-byte wrap key file (mode 0600)."""
    _settings(ctx, debug)
    if force and not os.path.isdir(wrap_key):
        check_output_target(wrap_key, force=True)  # --force replaces a regular file, nothing else
    generate_key_file(wrap_key, force=force)
    click.echo(f"wrote a new 16-byte key to {wrap_key} (mode 0600)")
    return 0


def _status(line: str, output: str) -> None:
    """A per-file status line: on stdout, or on stderr when the data itself goes to stdout."""
    click.echo(line, err=output == STDIO)


def _encrypt(ctx: click.Context, wrap_key: str, input_path: str, output: str, bind_path: str | None,
             bind_prefix: str | None, jobs: int, quiet: bool, verbose: bool, force: bool, no_fsync: bool,
             follow_symlinks: bool, debug: bool, manifest: str | None = None) -> int:
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    if bind_path is not None and bind_prefix is not None:
        raise UsageProblem("give either --bind-path or --bind-prefix, not both")
    not_empty(**{"-i/--input": input_path, "-o/--output": output, "--bind-path": bind_path,
                  "--bind-prefix": bind_prefix})
    if input_path != STDIO:
        require_existing(input_path, "input")
    tree = input_path != STDIO and os.path.isdir(input_path)
    if output == STDIO and tree:
        raise UsageProblem(f"input '{input_path}' is a folder: give an output folder, not -")
    if output == STDIO and bind_path is None:
        raise UsageProblem("with -o - give --bind-path: the path the encrypted file will be opened as")
    key = _load_key(wrap_key)
    if manifest is not None:  # bind as the manifest's encrypted mount will open each output
        if bind_path is not None or bind_prefix is not None:
            raise UsageProblem("give --manifest or --bind-path/--bind-prefix, not both")
        from libos.binding import bind_options_from_manifest

        bind_path, bind_prefix = bind_options_from_manifest(manifest, output, tree=tree)
    created: list[str] = []
    walked = None
    if tree:
        if bind_path is not None:
            raise UsageProblem(f"--bind-path names the path of one file, but input '{input_path}' is a "
                               "folder; use --bind-prefix for a tree")
        walked = walk_input_tree(input_path, output, follow_symlinks)
        if nothing_to_do(walked):
            return 0
        make_output_root(output, created)
        file_jobs = []
        for rel in walked.files:
            dst = os.path.join(output, rel)
            bound = bound_path_for(dst, bind_prefix=bind_prefix, relative_to=output)
            file_jobs.append(FileJob(os.path.join(input_path, rel), dst, bound,
                                     file_size(os.path.join(input_path, rel))))
    else:
        if output != STDIO:
            output_for_file(input_path, output)
        bound = bound_path_for(output, bind_path=bind_path, bind_prefix=bind_prefix)
        file_jobs = [FileJob(input_path, output, bound, file_size(input_path))]

    def on_ok(result: FileResult) -> None:
        if not quiet:
            extra = f" ({result.value} bytes)" if verbose else ""
            _status(f"{result.job.dst} -> bound to {result.job.path}{extra}", output)

    return run_tree(op_encrypt, file_jobs, {"key": key, "force": force, "jobs": jobs, "sync": not no_fsync},
                     workers=jobs if tree else 1, quiet=quiet, label="encrypting", created=created,
                     on_ok=on_ok, settings=settings, verb="encrypt", walked=walked, output=output,
                     verbose=verbose)


def _encrypt_options(func: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        wrap_key_option,
        click.option("-i", "--input", "input_path", required=True, metavar="IN",
                     help="Plaintext file, or folder tree to encrypt ('-': standard input; pipes and "
                          "FIFOs are read to their end)."),
        click.option("-o", "--output", "output", required=True, metavar="OUT",
                     help="Encrypted file, or folder (the output tree mirrors the input tree); "
                          "'-': standard output (needs --bind-path)."),
        click.option("--bind-path", metavar="PATH",
                     help="Bind the file to PATH (single file; default: the normalized output path)."),
        click.option("--bind-prefix", metavar="PREFIX",
                     help="Bind each file to PREFIX/<path relative to the output root> "
                          "(PREFIX/<basename> for a single file)."),
        click.option("--manifest", metavar="MANIFEST",
                     help="Bind each output as the encrypted mount of Gramine manifest MANIFEST that covers "
                          "it will open it: the mount's URI path + the output's path below it."),
        jobs_option, quiet_option, verbose_option, force_option, no_fsync_option, follow_symlinks_option,
        debug_option, click.pass_context,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


@cli.command("encrypt", cls=PfsFileCommand)
@_encrypt_options
def encrypt(ctx: click.Context, **kwargs: Any) -> int:
    """Encrypt a file or a folder tree; print the path each file is bound to.

    The bound path is what a Gramine manifest must use for the file (by default the output
    path, normalized: './enc//a' -> 'enc/a'). Outputs get the input's permission bits, minus
    the umask.
    """
    return _encrypt(ctx, **kwargs)


@click.command("pfs-encrypt", cls=PfsFileCommand, context_settings={"help_option_names": ["-h", "--help"]})
@_encrypt_options
def encrypt_standalone(ctx: click.Context, **kwargs: Any) -> int:
    """Encrypt a file or a folder tree (same as 'pfs encrypt')."""
    return _encrypt(ctx, **kwargs)


def _binding_warnings(result: FileResult, *, own_path: bool) -> None:
    """Warnings about a file that authenticated: a bound path other than its own, trailing nodes."""
    job, facts = result.job, result.value
    if own_path and job.path is None and job.src != STDIO:
        own = normalize_bound_path(job.src)
        if facts["bound"] != own:
            click.echo(f"pfs: warning: {job.src} is bound to '{facts['bound']}', not to its own path '{own}': "
                       f"Gramine opens it only as '{facts['bound']}' (-V or --strict makes this an error)",
                       err=True)


@cli.command("decrypt", cls=PfsFileCommand)
@wrap_key_option
@click.option("-i", "--input", "input_path", required=True, metavar="IN",
              help="Encrypted file, or folder tree to decrypt ('-': standard input).")
@click.option("-o", "--output", "output", required=True, metavar="OUT",
              help="Plaintext file or folder ('-': standard output, written once the whole file is authenticated).")
@click.option("-V", "--verify", "verify_path", is_flag=True,
              help="Check that each file is bound to its normalized input path, as Gramine opens it "
                   "(without a check, a file bound elsewhere is decrypted with a warning).")
@click.option("--expect-path", metavar="PATH", help="Check that the file is bound to PATH (single file).")
@bind_prefix_check_option
@strict_option
@jobs_option
@quiet_option
@verbose_option
@force_option
@no_fsync_option
@follow_symlinks_option
@debug_option
@click.pass_context
def decrypt(ctx: click.Context, wrap_key: str, input_path: str, output: str, verify_path: bool,
            expect_path: str | None, bind_prefix: str | None, strict: bool, jobs: int, quiet: bool, verbose: bool,
            force: bool, no_fsync: bool, follow_symlinks: bool, debug: bool) -> int:
    """Decrypt and authenticate a file or a folder tree; a failed file leaves no output.

    Outputs get the input's permission bits, minus the umask.
    """
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    not_empty(**{"-i/--input": input_path, "-o/--output": output, "--expect-path": expect_path,
                  "--bind-prefix": bind_prefix})
    _one_path_check(verify_path, expect_path, bind_prefix)
    verify_path = verify_path or (strict and expect_path is None and bind_prefix is None)
    if input_path == STDIO and verify_path:
        raise UsageProblem("standard input has no path to check: give --expect-path instead of -V/--strict")
    if input_path != STDIO:
        require_existing(input_path, "input")
    key = _load_key(wrap_key)
    tree = input_path != STDIO and os.path.isdir(input_path)
    created: list[str] = []
    walked = None
    if tree:
        if expect_path is not None:
            raise UsageProblem(f"--expect-path names the path of one file, but input '{input_path}' is a "
                               "folder; use -V to check each file against its own path")
        if output == STDIO:
            raise UsageProblem(f"input '{input_path}' is a folder: give an output folder, not -")
        walked = walk_input_tree(input_path, output, follow_symlinks)
        if nothing_to_do(walked):
            return 0
        make_output_root(output, created)
        file_jobs = []
        for rel in walked.files:
            src = os.path.join(input_path, rel)
            expected = _expected_path(src, input_path, verify_path, None, bind_prefix)
            file_jobs.append(FileJob(src, os.path.join(output, rel), expected, file_size(src)))
    else:
        if output != STDIO:
            output_for_file(input_path, output)
        expected = _expected_path(input_path, None, verify_path, expect_path, bind_prefix)
        file_jobs = [FileJob(input_path, output, expected, file_size(input_path))]

    def on_ok(result: FileResult) -> None:
        _binding_warnings(result, own_path=True)
        if result.value["trailing"]:
            click.echo(f"pfs: warning: {trailing_message(result.job.src, result.value['trailing'])}", err=True)
        if not quiet:
            checked = f" (bound path '{result.job.path}' verified)" if result.job.path is not None else ""
            extra = f", {result.value['size']} bytes" if verbose else ""
            _status(f"{result.job.src} -> {result.job.dst}{checked}{extra}", output)

    params = {"key": key, "force": force, "jobs": jobs, "sync": not no_fsync, "strict": strict}
    return run_tree(op_decrypt, file_jobs, params, workers=jobs if tree else 1, quiet=quiet, label="decrypting",
                     created=created, on_ok=on_ok, settings=settings, verb="decrypt", walked=walked, output=output,
                     verbose=verbose)


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
            lines.append(f"  trailing nodes   {info['trailing_nodes']} (past what the size needs: Gramine ignores "
                         "them, 'pfs verify' reports them)")
    return lines


@cli.command("info", cls=PfsFileCommand)
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
    found, unreadable = expand(files, "file")
    for path, _ in found:
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
    return 1 if failed or unreadable else 0


@cli.command("verify", cls=PfsFileCommand)
@wrap_key_option
@click.argument("paths", nargs=-1, required=True)
@click.option("--expect-path", metavar="PATH", help="Check that the (single) file is bound to PATH.")
@click.option("-V", "--verify-path", "verify_path", is_flag=True,
              help="Check that each file is bound to its own normalized path, as Gramine opens it "
                   "(without a check, a file bound elsewhere passes with a warning).")
@bind_prefix_check_option
@strict_option
@jobs_option
@quiet_option
@verbose_option
@follow_symlinks_option
@debug_option
@click.pass_context
def verify(ctx: click.Context, wrap_key: str, paths: tuple[str, ...], expect_path: str | None,
           verify_path: bool, bind_prefix: str | None, strict: bool, jobs: int, quiet: bool, verbose: bool,
           follow_symlinks: bool, debug: bool) -> int:
    """Authenticate every node of every file (files or trees); report each bad file.

    Trailing nodes after the data a file's size needs give a warning (Gramine ignores them;
    --strict makes them a failure).
    """
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    not_empty(**{"--expect-path": expect_path, "--bind-prefix": bind_prefix})
    _one_path_check(verify_path, expect_path, bind_prefix)
    verify_path = verify_path or (strict and expect_path is None and bind_prefix is None)
    key = _load_key(wrap_key)
    found, unreadable = expand(paths, "path", follow_symlinks=follow_symlinks, verbose=verbose)
    if expect_path is not None and (len(found) != 1 or found[0][1] is not None):
        raise UsageProblem("--expect-path applies to a single file; use -V to check each file's own path")
    if verify_path and any(path == STDIO for path, _ in found):
        raise UsageProblem("standard input has no path to check: give --expect-path instead of -V/--strict")
    file_jobs = []
    for path, tree in found:
        expected = _expected_path(path, tree, verify_path, expect_path, bind_prefix)
        file_jobs.append(FileJob(path, None, expected, file_size(path)))
    results: list[FileResult] = []
    with Progress(sum(j.weight for j in file_jobs), "verifying", enabled=not quiet) as bar:
        for result in run_file_jobs(op_verify, file_jobs, {"key": key, "jobs": jobs, "strict": strict},
                                    workers=jobs if len(file_jobs) > 1 else 1, progress=bar):
            results.append(result)
            if not result.ok:
                if settings.debug and result.trace:
                    click.echo(result.trace.rstrip(), err=True)
                click.echo(f"BAD  {result.message}")
                continue
            _binding_warnings(result, own_path=True)
            if result.value["trailing"]:
                click.echo(f"pfs: warning: {trailing_message(result.job.src, result.value['trailing'])}", err=True)
            if verbose:
                click.echo(f"ok   {result.job.src} ({result.value['size']} bytes)")
    bad = sum(not r.ok for r in results)
    click.echo(f"{len(results) - bad} files ok" + (f", {bad} bad" if bad else ""))
    if bad:
        echo_error(f"{bad} of {len(results)} files failed verification")
    if unreadable:
        echo_error(f"{unreadable} entr{'y' if unreadable == 1 else 'ies'} of the trees could not be read; "
                   "what is under them was not verified")
    return 1 if bad or unreadable else 0


@cli.command("tamper", cls=PfsFileCommand)
@wrap_key_option
@click.option("-i", "--input", "input_path", required=True, metavar="FILE", help="A valid encrypted file.")
@click.option("-o", "--output", "output", required=True, metavar="DIR", help="Folder for the variants.")
@force_option
@quiet_option
@debug_option
@click.pass_context
def tamper(ctx: click.Context, wrap_key: str, input_path: str, output: str, force: bool, quiet: bool,
           debug: bool) -> int:
    """Write corrupted variants of an encrypted file (like Gramine's pf_tamper), for testing readers.

    All variants appear at once or none does: they are written into a temporary folder beside
    the output and moved into place when every one is complete.
    """
    _settings(ctx, debug)
    not_empty(**{"-i/--input": input_path, "-o/--output": output})
    require_file(input_path, "input", folder_hint="; give one encrypted file")
    if os.path.exists(output) and not os.path.isdir(output):
        raise CliError(f"output '{output}' is a file; give a folder for the variants", code=2)
    key = _load_key(wrap_key)
    from pfs.tamper import make_tampered_variants  # rarely used: keep it off the start-up path

    created: list[str] = []
    make_dirs(os.path.dirname(output.rstrip(os.sep)), created)
    try:
        variants = make_tampered_variants(input_path, key, output, overwrite=force)
    finally:
        prune_dirs(created)
    if not quiet:
        width = max((len(n) for n, _ in variants), default=0)
        for name, description in variants:
            click.echo(f"{name.ljust(width)}  {description}")
    click.echo(f"wrote {len(variants)} variants to {output}")
    return 0


@cli.command("rekey", cls=PfsFileCommand)
@wrap_key_option
@click.option("--new-key", "new_key", required=True, metavar="FILE", help="Key file of the new key.")
@click.argument("paths", nargs=-1, required=True)
@jobs_option
@quiet_option
@verbose_option
@follow_symlinks_option
@debug_option
@click.pass_context
def rekey(ctx: click.Context, wrap_key: str, new_key: str, paths: tuple[str, ...], jobs: int, quiet: bool,
          verbose: bool, follow_symlinks: bool, debug: bool) -> int:
    """Re-encrypt files in place under a new key, keeping their bound paths (atomic per file)."""
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    if STDIO in paths:
        raise UsageProblem("rekey rewrites files in place: standard input (-) can't be one")
    old = _load_key(wrap_key)
    new = _load_key(new_key, what="new key")
    found, unreadable = expand(paths, "path", follow_symlinks=follow_symlinks, verbose=verbose)
    file_jobs = [FileJob(path, None, None, file_size(path)) for path in distinct_files(found, verbose)]

    def on_ok(result: FileResult) -> None:
        if not quiet:
            click.echo(f"{result.job.src}: re-encrypted under the new key (bound to {result.value})")

    status = run_tree(op_rekey, file_jobs, {"key": old, "new_key": new}, workers=jobs, quiet=quiet,
                       label="re-encrypting", created=[], on_ok=on_ok, settings=settings, verb="re-encrypt")
    if unreadable:
        echo_error(f"{unreadable} entr{'y' if unreadable == 1 else 'ies'} of the trees could not be read; "
                   "what is under them was not re-encrypted")
    return status or (1 if unreadable else 0)


# ---------------------------------------------------------------------- entry points

cli.add_command(mount)
cli.add_command(umount)


def _raw_names_on_stdout() -> None:
    """File names that are not UTF-8 are printed as their raw bytes (as ``ls`` prints them), on
    stdout and in messages on stderr."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="surrogateescape")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``pfs``."""
    _raw_names_on_stdout()
    cli.main(args=argv, prog_name="pfs")


def encrypt_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``pfs-encrypt`` (the same as ``pfs encrypt``)."""
    _raw_names_on_stdout()
    encrypt_standalone.main(args=argv, prog_name="pfs-encrypt")


if __name__ == "__main__":
    main()
