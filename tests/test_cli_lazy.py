"""The command lines import only what the command given needs (start-up counts: ``libos run``
pays it on every run). Structural checks, not timings: which modules a real process imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from helpers import require

from tools import libos_cli, pfs_cli
from tools.lazy_group import LazyGroup

ROOT = Path(__file__).resolve().parent.parent

# Run a command line's entry point as its console script does, then list the modules imported.
DRIVER = """
import sys
out, entry, args = sys.argv[1], sys.argv[2], sys.argv[3:]
module, func = entry.split(":")
try:
    getattr(__import__(module, fromlist=[func]), func)(args)
except SystemExit:
    pass
with open(out, "w") as f:
    f.write("\\n".join(sorted(sys.modules)))
"""

HEAVY = ("cryptography", "pfs.stream", "pfs.protected_file", "pfs.forkpool", "vfs", "libos", "mfusepy",
         "tools.pfs_commands", "tools.libos_commands", "tools.file_ops", "json", "tempfile", "traceback")


def imported(tmp_path: Path, entry: str, *args: str) -> set[str]:
    """The modules a process running ``entry`` (``module:function``) with ``args`` imported."""
    out = tmp_path / "modules.txt"
    # a plain environment (no PYTHONSTARTUP and the like); the project comes from ROOT
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(out), entry, *args], cwd=ROOT,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return set(out.read_text().split("\n"))


def heavy_in(modules: set[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy))


@pytest.mark.parametrize("args", [["--help"], ["-h"], []], ids=["--help", "-h", "no-args"])
def test_pfs_help_imports_no_command(tmp_path: Path, args: list[str]) -> None:
    """``pfs --help`` lists every command from the table: no command module, no cryptography,
    no stream code, no VFS, none of json/tempfile/traceback."""
    modules = imported(tmp_path, "tools.pfs_cli:main", *args)
    assert "tools.pfs_cli" in modules
    assert heavy_in(modules) == []


def test_libos_help_imports_no_command(tmp_path: Path) -> None:
    modules = imported(tmp_path, "tools.libos_cli:main", "--help")
    assert "tools.libos_cli" in modules
    assert heavy_in(modules) == []


def test_import_pfs_errors_imports_no_cryptography(tmp_path: Path) -> None:
    """The library side of it: ``pfs.errors`` (which every command line needs) comes without the
    encrypted-file code; ``pfs.ProtectedFile`` and ``pfs.open`` load it on first use."""
    code = ("import sys, pfs.errors, pfs.paths, pfs.layout, libos.manifest\n"
            "before = sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'vfs') "
            "or m in ('pfs.stream', 'pfs.protected_file', 'libos.libos'))\n"
            "import pfs, libos\n"
            "assert pfs.ProtectedFile.__module__ == 'pfs.protected_file' and pfs.open.__module__ == 'pfs.fileio'\n"
            "assert pfs.encrypt_stream.__module__ == 'pfs.stream' and libos.LibOS.__module__ == 'libos.libos'\n"
            "assert 'ProtectedFile' in dir(pfs) and 'LibOS' in dir(libos)\n"
            "try:\n    pfs.no_such_name\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit('no error')\n"
            "print(before)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_pfs_info_without_key_imports_no_cryptography(tmp_path: Path) -> None:
    """Reading a header needs no cryptography; the command still loads (and only) its module."""
    target = tmp_path / "not-encrypted"
    target.write_bytes(b"x" * 100)
    modules = imported(tmp_path, "tools.pfs_cli:main", "info", str(target))
    assert "tools.pfs_commands.info" in modules
    assert heavy_in(modules, ("cryptography", "pfs.stream", "pfs.protected_file", "vfs", "libos")) == []
    assert [m for m in modules if m.startswith("tools.pfs_commands.")] == ["tools.pfs_commands.info"]


def test_pfs_encrypt_imports_no_vfs(tmp_path: Path) -> None:
    modules = imported(tmp_path, "tools.pfs_cli:encrypt_main", "--help")
    assert "pfs.stream" in modules
    assert heavy_in(modules, ("vfs", "libos", "mfusepy", "tools.mounting")) == []


GROUPS = [pytest.param(pfs_cli.cli, id="pfs"), pytest.param(libos_cli.cli, id="libos")]


def _help(group: click.Group, width: int) -> str:
    ctx = click.Context(group, info_name=group.name, terminal_width=width, max_content_width=width)
    return group.get_help(ctx)


@pytest.mark.parametrize("group", GROUPS)
def test_table_matches_commands(group: LazyGroup) -> None:
    """Each table entry names a command whose name and docstring match it, and the group's help
    is the same before and after its commands are imported (at any width)."""
    lazy = LazyGroup(group.name, lazy_commands=group.lazy_commands, params=group.params, help=group.help,
                     context_settings=group.context_settings)
    before = {width: _help(lazy, width) for width in (40, 80, 200)}
    assert not lazy.commands
    for name, spec in group.lazy_commands.items():
        command = lazy.load(name)
        assert command.name == name, spec
        first_paragraph = (command.help or "").split("\n\n")[0]
        assert spec.help.split() == first_paragraph.split(), f"{name}: the table's help differs from the docstring"
        lazy.add_command(command, name)
    assert {width: _help(lazy, width) for width in (40, 80, 200)} == before


@pytest.mark.parametrize(("entry", "typo", "expected"), [
    ("tools.pfs_cli:main", "encrpt", "pfs: error: No such command 'encrpt'. (Did you mean one of: 'decrypt', "
                                     "'encrypt'?) (see 'pfs --help')"),
    ("tools.libos_cli:main", "mnt", "Error: No such command 'mnt'. Did you mean 'mount'?"),
])
def test_mistyped_command_suggests_unloaded_ones(entry: str, typo: str, expected: str) -> None:
    """click suggests close names among the commands it knows: with lazy commands that must
    still be all of them, not only those loaded so far (none), exit status 2 as before."""
    module, func = entry.split(":")
    proc = subprocess.run([sys.executable, "-c", f"import {module}; {module}.{func}()", typo], cwd=ROOT,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == expected


@pytest.mark.parametrize(("entry", "command"), [("tools.pfs_cli:main", "mount"), ("tools.libos_cli:main", "mount")],
                         ids=["pfs", "libos"])
def test_mount_help_imports_no_vfs(tmp_path: Path, entry: str, command: str) -> None:
    """A mount command's help (and its usage errors) come before the VFS and FUSE are loaded."""
    modules = imported(tmp_path, entry, command, "--help")
    assert heavy_in(modules, ("vfs", "libos.libos", "mfusepy")) == []


def _run_manifest(tmp_path: Path, *, encrypted: bool) -> Path:
    """A manifest running /bin/true over the host's /usr, /lib*, /bin, /etc, a tmpfs /tmp and,
    with ``encrypted``, an encrypted /w as its start folder (no file of it opened)."""
    mounts = [f'{{ path = "{p}", uri = "file:{os.path.realpath(p)}" }}' for p in
              ("/usr", "/lib", "/lib64", "/bin", "/etc") if os.path.isdir(p)]
    mounts.append('{ type = "tmpfs", path = "/tmp" }')
    lines = ['libos.entrypoint = "/bin/true"']
    if encrypted:
        (tmp_path / "enc").mkdir()
        mounts.append(f'{{ type = "encrypted", path = "/w", uri = "file:{tmp_path / "enc"}/", key_name = "k" }}')
        lines += ['fs.start_dir = "/w"', f'fs.insecure__keys.k = "{"ab" * 16}"']
    path = tmp_path / "m.toml"
    path.write_text("\n".join([*lines, "fs.mounts = [", *[f"  {m}," for m in mounts], "]"]) + "\n")
    return path


@pytest.mark.parametrize("encrypted", [False, True], ids=["chroot", "encrypted"])
def test_libos_run_imports_no_click_and_no_crypto_it_does_not_use(tmp_path: Path, encrypted: bool) -> None:
    """A plain ``libos run MANIFEST`` (what every run pays) is read without click, and loads the
    encrypted-file code (cryptography) only when a program opens an encrypted file: not for a
    manifest without encrypted mounts, nor for one whose program opens none of its files."""
    require(os.geteuid() == 0 and os.path.exists("/dev/fuse"), "libos run needs root and /dev/fuse")
    modules = imported(tmp_path, "tools.libos_cli:main", "run", str(_run_manifest(tmp_path, encrypted=encrypted)))
    assert "libos.runner" in modules and "mfusepy" in modules  # it did run
    unused = ("click", "cryptography", "pfs.protected_file", "pfs.fileio", "tools.libos_commands", "pathlib", "uuid",
              "ctypes.util", "subprocess", "tempfile")
    assert heavy_in(modules, unused) == []


@pytest.mark.parametrize("args", [
    ["m.toml"], ["m.toml", "--", "-c", "x"], ["m.toml", "a", "--debug", "-k", "x=y"], ["--", "m.toml", "--", "a"],
    ["--", "-m.toml"], ["m.toml", "--", "--", "a"], ["-k", "a=b", "--key", "c=d", "--key=e=f", "-kg=h", "m.toml"],
    ["--debug", "-k", "a=b=c", "m.toml", "-k", "x"], ["-k", "a=b", "--debug", "--", "m.toml", "-c"],
])
def test_libos_run_plain_command_line_reads_as_click_does(args: list[str]) -> None:
    """What the click-free reader of ``libos run`` makes of a command line is what click makes of it."""
    from tools.libos_commands.run import run
    from tools.libos_run import parse_plain

    parsed = parse_plain(args)
    assert parsed is not None, args
    params = run.make_context("run", list(args)).params
    rest = list(params["args"])
    if rest[:1] == ["--"]:
        rest = rest[1:]
    assert parsed == (params["manifest"], rest, list(params["keys"]), params["debug"])


@pytest.mark.parametrize("args", [
    [], ["--help"], ["-h", "m.toml"], ["--debug"], ["-k"], ["-k", "bad", "m.toml"], ["--key=", "m.toml"],
    ["--keys", "a=b", "m.toml"], ["-", "m.toml"], ["--debug=1", "m.toml"], ["-x", "m.toml"],
])
def test_libos_run_other_command_lines_go_to_click(args: list[str]) -> None:
    """Help, unknown options, a missing MANIFEST or a malformed --key are click's to answer."""
    from tools.libos_run import parse_plain

    assert parse_plain(args) is None


@pytest.mark.parametrize(("args", "expected"), [
    (["-k", "bad", "m.toml"], "Error: --key 'bad': expected NAME=FILE (a key file, as 'pfs gen-key -w' writes)"),
    ([], "Error: Missing argument 'MANIFEST'."),
    (["--nope", "m.toml"], "libos: error: manifest '--nope' not found: No such file or directory"),
])
def test_libos_run_usage_errors_as_before(tmp_path: Path, args: list[str], expected: str) -> None:
    """Command lines the plain reader leaves to click get click's answers (exit status 2 for
    usage errors; an unknown option before MANIFEST is taken as MANIFEST, as click does)."""
    proc = subprocess.run([sys.executable, "-c", "import tools.libos_cli as c; c.main()", "run", *args], cwd=tmp_path,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.stderr.strip().splitlines()[-1] == expected
    assert proc.returncode == (1 if expected.startswith("libos:") else 2)
    assert "Traceback" not in proc.stderr
