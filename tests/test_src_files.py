"""``loader.argv_src_file`` / ``loader.env_src_file``: argv and environment from a host file of
NUL-terminated strings, by Gramine's rules (pal/src/pal_main.c); each error one line naming the key.
The last test runs a real program under ``libos run`` with both."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from helpers import require
from run_helpers import LIBOS, PYTHON, TIMEOUT, View, runner_state

from libos.loader import UsageError, launch_plan
from libos.manifest import ManifestError, load_manifest


def serialized(*strings: str) -> bytes:
    """What gramine-argv-serializer writes: each string followed by a NUL."""
    return b"".join(s.encode() + b"\0" for s in strings)


def manifest(tmp_path: Path, text: str, host_env: dict[str, str] | None = None):
    path = tmp_path / "app.manifest.toml"
    path.write_text('libos.entrypoint = "/bin/prog"\n' + text)
    return load_manifest(path, host_env=host_env or {})


def test_argv_src_file_is_the_whole_argv(tmp_path: Path) -> None:
    (tmp_path / "args").write_bytes(serialized("prog0", "-c", "a b", "", "ünï"))
    plan = launch_plan(manifest(tmp_path, 'loader.argv_src_file = "file:args"'), [])
    assert plan.argv == ["prog0", "-c", "a b", "", "ünï"]  # relative URI: the manifest's folder
    plan = launch_plan(manifest(tmp_path, f'loader.argv_src_file = "file:{tmp_path}/args"\n'
                                          'loader.argv0_override = "zero"'), [])
    assert plan.argv == ["zero", "-c", "a b", "", "ünï"]


@pytest.mark.parametrize("other", ['loader.argv = ["p"]', "loader.insecure__use_cmdline_argv = true"])
def test_argv_src_file_excludes_the_other_argv_sources(tmp_path: Path, other: str) -> None:
    (tmp_path / "args").write_bytes(serialized("p"))
    with pytest.raises(ManifestError, match="mutually exclusive") as err:
        launch_plan(manifest(tmp_path, f'loader.argv_src_file = "file:args"\n{other}'), [])
    assert "loader.argv_src_file" in str(err.value) and "\n" not in str(err.value)


def test_argv_src_file_and_command_line_arguments(tmp_path: Path) -> None:
    (tmp_path / "args").write_bytes(serialized("p"))
    with pytest.raises(UsageError, match=r"loader\.argv_src_file gives the program's whole argv"):
        launch_plan(manifest(tmp_path, 'loader.argv_src_file = "file:args"'), ["-x"])


@pytest.mark.parametrize(("content", "uri", "message"), [
    (None, "file:missing", r"manifest\.toml: loader\.argv_src_file: can't read .*/missing: No such file or directory"),
    (b"prog\0-x", "file:args", r"manifest\.toml: loader\.argv_src_file: .*/args does not end with a NUL byte"),
    (b"", "file:args", r"manifest\.toml: loader\.argv_src_file: the file holds no argument"),
    (None, "args", r"manifest\.toml: loader\.argv_src_file: expected a \"file:\" URI"),
    (None, "file:", r"manifest\.toml: loader\.argv_src_file: expected a \"file:\" URI"),
])
def test_argv_src_file_errors_name_the_key(tmp_path: Path, content: bytes | None, uri: str, message: str) -> None:
    if content is not None:
        (tmp_path / "args").write_bytes(content)
    with pytest.raises(ManifestError, match=message) as err:
        launch_plan(manifest(tmp_path, f'loader.argv_src_file = "{uri}"'), [])
    assert "\n" not in str(err.value)


def test_argv_src_file_not_a_string_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"loader\.argv_src_file"):
        launch_plan(manifest(tmp_path, "loader.argv_src_file = 3"), [])


def test_env_src_file_entries_combined_with_loader_env(tmp_path: Path) -> None:
    (tmp_path / "env").write_bytes(serialized("A=file", "B=file", "C=file=x", "D=", "A=second"))
    text = ('loader.env_src_file = "file:env"\nloader.env.B = "manifest"\nloader.env.C = { passthrough = true }\n'
            'loader.env.E = { value = "manifest" }\nloader.env.F = { passthrough = true }\n')
    plan = launch_plan(manifest(tmp_path, text, host_env={"F": "host", "G": "host"}), [])
    # the file's entries, loader.env's values over them; passthrough keeps the file's entry, and
    # nothing comes from the host (F and G unset); a repeated name: the first, as getenv() finds
    assert plan.env == {"A": "file", "B": "manifest", "C": "file=x", "D": "", "E": "manifest"}


def test_env_src_file_errors_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "env").write_bytes(serialized("A=1", "SECRET_TOKEN_WITHOUT_EQUALS"))
    with pytest.raises(ManifestError, match=r"manifest\.toml: loader\.env_src_file: entry 2 has no '='") as err:
        launch_plan(manifest(tmp_path, 'loader.env_src_file = "file:env"'), [])
    assert "SECRET" not in str(err.value)  # an environment may hold secrets: never echoed
    (tmp_path / "env").write_bytes(serialized("A=1", "=v"))
    with pytest.raises(ManifestError, match=r"manifest\.toml: loader\.env_src_file: entry 2 has an empty name"):
        launch_plan(manifest(tmp_path, 'loader.env_src_file = "file:env"'), [])
    (tmp_path / "env").write_bytes(b"A=1")
    with pytest.raises(ManifestError, match=r"manifest\.toml: loader\.env_src_file: .*does not end with a NUL byte"):
        launch_plan(manifest(tmp_path, 'loader.env_src_file = "file:env"'), [])
    (tmp_path / "env").write_bytes(b"")
    assert launch_plan(manifest(tmp_path, 'loader.env_src_file = "file:env"'), []).env == {}
    with pytest.raises(ManifestError, match=r"manifest\.toml: loader\.env_src_file: loader\.insecure__use_host_env and "
                                            r"loader\.env_src_file can't be used together"):
        launch_plan(manifest(tmp_path, 'loader.env_src_file = "file:env"\nloader.insecure__use_host_env = true'),
                    [])


def test_src_files_held_to_the_manifests_file_rules(tmp_path: Path) -> None:
    args = tmp_path / "args"
    args.write_bytes(serialized("p", "x"))
    digest = hashlib.sha256(args.read_bytes()).hexdigest()
    trusted = ('loader.argv_src_file = "file:args"\n'
               f'sgx.trusted_files = [{{ uri = "file:args", sha256 = "{digest}" }}]\n')
    assert launch_plan(manifest(tmp_path, trusted), []).argv == ["p", "x"]
    args.write_bytes(serialized("p", "y"))  # changed after the manifest was made
    with pytest.raises(ManifestError, match=r"manifest\.toml: loader\.argv_src_file: .*does not match its sha256"):
        launch_plan(manifest(tmp_path, trusted), [])
    unlisted = 'loader.argv_src_file = "file:args"\nsgx.trusted_files = ["file:/usr/bin/python3"]\n'
    with pytest.raises(ManifestError, match=r"loader\.argv_src_file: .*neither a trusted nor an allowed file"):
        launch_plan(manifest(tmp_path, unlisted), [])
    allowed = 'loader.argv_src_file = "file:args"\nsgx.allowed_files = ["file:./"]\n'
    assert launch_plan(manifest(tmp_path, allowed), []).argv == ["p", "y"]


PRINT = "import os, sys; print(sys.argv[1:], sorted((k, v) for k, v in os.environ.items() if k.startswith('T_')))"


def test_libos_run_takes_argv_and_env_from_files(tmp_path: Path) -> None:
    from fuse_helpers import fuse_unavailable

    why = fuse_unavailable() or runner_state()
    require(why is None, f"libos run unavailable: {why}")
    v = View(tmp_path / "view", PYTHON, start_dir="/tmp")
    (v.root / "args").write_bytes(serialized("python3", "-c", PRINT, "one", "two words"))
    (v.root / "env").write_bytes(serialized("T_A=from file", "T_B=file", "PATH=/usr/bin"))
    text = v.manifest.read_text().replace("loader.insecure__use_cmdline_argv = true\n",
                                          'loader.argv_src_file = "file:args"\nloader.env_src_file = "file:env"\n'
                                          'loader.env.T_B = "manifest"\n')
    v.manifest.write_text(text)
    proc = subprocess.run([LIBOS, "run", str(v.manifest)], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "['one', 'two words'] [('T_A', 'from file'), ('T_B', 'manifest')]\n"
    (v.root / "env").write_bytes(b"T_A=no final NUL")
    proc = subprocess.run([LIBOS, "run", str(v.manifest)], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "loader.env_src_file" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
