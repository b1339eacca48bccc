"""What ``libos run`` does once its command line is read, and the reading of a plain one without
click (``libos run`` pays its start-up on every run; click alone costs ~30 ms of imports).

:func:`main_plain` reads ``[-k NAME=FILE | --key NAME=FILE | --key=NAME=FILE | -kNAME=FILE |
--debug]... [--] MANIFEST [ARGS]...`` exactly as the click command
(:mod:`tools.libos_commands.run`) does and runs it; a command line it can't read in full (help,
another option, no MANIFEST, a malformed ``--key``) is left to click, which answers it as before.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Sequence


def _warn(message: str) -> None:
    sys.stderr.write(f"libos: warning: {message}\n")
    sys.stderr.flush()


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    sys.stderr.write(f"libos: error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    sys.exit(code)


def key_spec_ok(spec: str) -> bool:
    """``--key``'s value has the form NAME=FILE (both non-empty)."""
    name, sep, path = spec.partition("=")
    return bool(sep and name and path)


def _load_keys(lo, specs: Sequence[str]) -> None:
    """``--key NAME=FILE``: set key NAME from FILE (16 raw bytes or 32 hex characters)."""
    from pfs.keys import load_key

    for spec in specs:
        name, _, path = spec.partition("=")
        lo.keys.set(name, load_key(path, what=f"key {name!r}"))


def parse_plain(args: Sequence[str]) -> tuple[str, list[str], list[str], bool] | None:
    """(manifest, program arguments, key specs, debug) of ``libos run ARGS`` as click reads
    them, or None when click must read them (help, an unknown option, no MANIFEST, a bad --key)."""
    keys: list[str] = []
    debug = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--debug":
            debug = True
        elif arg in ("-k", "--key"):
            if i + 1 == len(args):
                return None
            i += 1
            keys.append(args[i])
        elif arg.startswith("--key="):
            keys.append(arg[len("--key="):])
        elif arg.startswith("-k") and not arg.startswith("--"):
            keys.append(arg[2:])
        elif arg == "--":
            i += 1
            break
        elif arg.startswith("-"):
            return None
        else:
            break
        i += 1
    if i == len(args) or not all(key_spec_ok(k) for k in keys):
        return None
    rest = list(args[i + 1:])
    if rest[:1] == ["--"]:  # click keeps the separator after MANIFEST: dropped, as by the click command
        rest = rest[1:]
    return args[i], rest, keys, debug


def main_plain(args: Sequence[str], *, own_process: bool = False) -> None:
    """Run ``libos run ARGS`` when :func:`parse_plain` reads it (never returns then); else return.
    ``own_process`` (the ``libos`` command itself, not a caller in Python): exit without the
    interpreter's finalization once the run is over (everything is flushed and closed by then;
    tearing down ~300 modules cost ~10-15 ms of every run)."""
    parsed = parse_plain(args)
    if parsed is None:
        return
    manifest, rest, keys, debug = parsed
    try:
        code = execute(manifest, rest, keys, debug)
    except KeyboardInterrupt:  # before the program runs (the runner passes signals on from then on)
        sys.stderr.write("Aborted!\n")  # what click says
        sys.exit(1)
    if own_process:
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


def execute(manifest: str, args: list[str], keys: Sequence[str], debug: bool, *, platform_file: str | None = None,
            pal: str | None = None) -> int:
    """``libos run``: boot MANIFEST's view, run its entry point with ``args``; its exit status.
    Every error is one line on stderr (``--debug`` adds the traceback) and exits: 2 for a command
    line that doesn't fit the manifest, 1 otherwise. ``keys`` are NAME=FILE (checked);
    ``platform_file`` and ``pal`` (a signed manifest's, checked to be one) are
    :meth:`libos.LibOS.boot`'s ``platform`` and ``pal``."""
    import logging

    logging.basicConfig(format="libos: warning: %(message)s", level=logging.WARNING)
    from libos.errors import LibosError
    from libos.loader import UsageError, launch_plan, unsupported_keys
    from libos.manifest import ManifestError, load_manifest

    try:
        try:
            m = load_manifest(manifest)
        except FileNotFoundError as exc:
            raise LibosError(f"manifest '{manifest}' not found: {exc.strerror}") from None
        plan = launch_plan(m, args)
        for line in unsupported_keys(m):
            _warn(line)
        from libos.runner import enter_namespaces
        from libos.runner import run as run_plan

        enter_namespaces(plan)  # unprivileged: a user namespace, before anything starts a thread
        from libos import LibOS

        lo = LibOS.boot(m, platform=platform_file, pal=pal)
        _load_keys(lo, keys)
        missing = [n for n in m.keys_missing if not lo.keys.is_set(n)]
        if missing:
            raise LibosError(f"key {missing[0]!r} (key_name of an encrypted mount) is not set: give it with "
                             f"--key {missing[0]}=FILE or in fs.insecure__keys")
        code = run_plan(m, plan, debug=debug, lo=lo, on_error=lambda msg: _warn(msg))
    except UsageError as exc:
        _fail(str(exc), 2, debug)
    except (ManifestError, OSError) as exc:
        _fail(str(exc) if isinstance(exc, ManifestError | LibosError) or not exc.strerror
              else f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else ""), 1, debug)
    except Exception as exc:
        _fail(f"{type(exc).__name__}: {exc}", 1, debug)
    return code
