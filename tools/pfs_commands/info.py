"""``pfs info``: what an encrypted file's header (and, with a key, its metadata) says."""

from __future__ import annotations

from typing import Any

import click

from pal import HostFile
from pfs.inspect import read_full_info, read_header_info

from ..cli_support import describe_error, echo_error
from ..pfs_command import PfsFileCommand, _load_key, _settings, debug_option
from ..tree_run import expand


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


@click.command("info", cls=PfsFileCommand)
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
                import traceback

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
        import json

        click.echo(json.dumps(records, indent=2))
    if failed and len(records) > 1:
        echo_error(f"{failed} of {len(records)} files could not be read")
    return 1 if failed or unreadable else 0
