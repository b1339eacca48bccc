"""Walking the folder trees of the ``pfs`` file commands, and saying what was left out.

A tree run processes the regular files under its root. Nothing is left out silently: every
entry that is not processed is a :class:`Skipped` with the reason, printed by
:func:`report_skipped`; an unreadable folder is an error (the run exits non-zero).

- Symbolic links are not followed out of the tree: a link to a regular file inside the tree
  counts as that file, any other link (to a folder, to a file outside the tree, dangling) is
  skipped with a warning, unless ``follow_symlinks`` (links are then followed anywhere; a
  link loop is skipped).
- FIFOs, sockets and devices are skipped with a warning.
- Gramine's recovery journals (``NAME.gramine.recovery``) belong to their file and are not
  inputs: skipped, with a warning when their file is flagged as needing recovery (or is gone).
- Temporary outputs left by an interrupted ``pfs`` run (``.NAME.pfs-tmp-*``, possibly holding
  plaintext) are reported with the command that removes them; they are not deleted, since a
  run still going on may own them.
"""

from __future__ import annotations

import os
import shlex
import stat
from dataclasses import dataclass, field

import click

from pfs.layout import FILE_ID, FLAG_UPDATE_PENDING, OFF_FLAGS, RECOVERY_SUFFIX

from .cli_support import echo_error, is_inside
from .outputs import TMP_MARKER


@dataclass
class Skipped:
    """An entry of a tree that is not processed: ``level`` is "error" (the run fails),
    "warning" or "info" (shown with ``-v``)."""

    path: str
    why: str
    level: str = "warning"


@dataclass
class Tree:
    """What :func:`walk_tree` found under ``root`` (paths relative to it, sorted)."""

    root: str
    files: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(s.level == "error" for s in self.skipped)

    def empty_folders(self) -> list[str]:
        """The folders with no file to process anywhere below them."""
        holding: set[str] = set()
        for f in self.files:
            folder = os.path.dirname(f)
            while folder and folder not in holding:
                holding.add(folder)
                folder = os.path.dirname(folder)
        return [d for d in self.folders if d not in holding]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def needs_recovery(path: str) -> bool:
    """Whether ``path`` is an encrypted file whose header is flagged "update pending"."""
    try:
        with open(path, "rb") as f:
            head = f.read(OFF_FLAGS + 1)
    except OSError:
        return False
    return len(head) > OFF_FLAGS and head.startswith(FILE_ID) and bool(head[OFF_FLAGS] & FLAG_UPDATE_PENDING)


def _journal(tree: Tree, full: str, names: set[str], name: str) -> None:
    main = name[:-len(RECOVERY_SUFFIX)]
    main_full = full[:-len(RECOVERY_SUFFIX)]
    if main not in names:
        tree.skipped.append(Skipped(full, f"recovery journal of '{main_full}', which does not exist; skipped"))
    elif needs_recovery(main_full):
        tree.skipped.append(Skipped(
            full, f"recovery journal of '{main_full}', which an interrupted write left needing recovery: keep "
                  "the journal, it is what rolls that file back (open it once with recovery, e.g. through "
                  "'pfs mount --rw --recovery'); the journal itself is not an input"))
    else:
        tree.skipped.append(Skipped(full, f"recovery journal of '{main_full}'; not an input", "info"))


def _leftover(full: str, folder: bool) -> Skipped:
    rm = "rm -r --" if folder else "rm --"
    return Skipped(full, "leftover temporary output of an interrupted pfs run (it may hold plaintext); "
                         f"skipped: if no pfs run is going on, delete it with '{rm} {shlex.quote(full)}'")


def walk_tree(root: str, *, skip: str | None = None, follow_symlinks: bool = False) -> Tree:
    """Walk the tree at ``root``; ``skip`` (a folder inside it, e.g. the output) is left out."""
    tree = Tree(root)
    skip_real = os.path.realpath(skip) if skip else None
    root_real = os.path.realpath(root)

    def visit(folder: str, rel: str, ancestors: frozenset[str]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            tree.skipped.append(Skipped(folder, f"can't read folder: {exc.strerror}; its files were not processed",
                                        "error"))
            return
        names = {e.name for e in entries}
        for entry in entries:
            name = entry.name
            full = os.path.join(folder, name)
            sub = os.path.join(rel, name) if rel else name
            try:
                st = os.lstat(full)
            except OSError as exc:
                tree.skipped.append(Skipped(full, f"can't read: {exc.strerror}", "error"))
                continue
            if TMP_MARKER in name:
                tree.skipped.append(_leftover(full, stat.S_ISDIR(st.st_mode)))
                continue
            if name.endswith(RECOVERY_SUFFIX) and stat.S_ISREG(st.st_mode):
                _journal(tree, full, names, name)
                continue
            if stat.S_ISLNK(st.st_mode):
                try:
                    st = os.stat(full)
                except OSError:
                    tree.skipped.append(Skipped(full, "dangling symbolic link; skipped"))
                    continue
                target = os.path.realpath(full)
                if stat.S_ISDIR(st.st_mode):
                    if not follow_symlinks:
                        tree.skipped.append(Skipped(full, f"symbolic link to the folder '{target}'; not followed "
                                                          "(--follow-symlinks follows it)"))
                    elif target in ancestors or target == skip_real:
                        tree.skipped.append(Skipped(full, f"symbolic link to '{target}', which holds it "
                                                          "(a loop); not followed"))
                    else:
                        tree.folders.append(sub)
                        visit(full, sub, ancestors | {target})
                    continue
                if stat.S_ISREG(st.st_mode) and not follow_symlinks and not is_inside(target, root_real):
                    tree.skipped.append(Skipped(full, f"symbolic link to '{target}', outside the tree; not "
                                                      "followed (--follow-symlinks follows it)"))
                    continue
            if stat.S_ISDIR(st.st_mode):
                if skip_real is not None and os.path.realpath(full) == skip_real:
                    tree.skipped.append(Skipped(full, "the output folder; left out", "info"))
                    continue
                tree.folders.append(sub)
                visit(full, sub, ancestors | {os.path.realpath(full)})
            elif stat.S_ISREG(st.st_mode):
                tree.files.append(sub)
            else:
                tree.skipped.append(Skipped(full, f"{_kind(st.st_mode)}, not a regular file; skipped"))

    visit(root, "", frozenset({root_real}))
    return tree


def report_skipped(skipped: list[Skipped], *, verbose: bool) -> int:
    """Print one line per skipped entry (errors and warnings always, the rest with ``verbose``);
    return the number of errors."""
    errors = 0
    for item in skipped:
        if item.level == "error":
            errors += 1
            echo_error(f"{item.path}: {item.why}")
        elif item.level == "warning":
            click.echo(f"pfs: warning: {item.path}: {item.why}", err=True)
        elif verbose:
            click.echo(f"pfs: note: {item.path}: {item.why}", err=True)
    return errors
