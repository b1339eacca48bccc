"""libos.sgx_manifest: the final manifest is byte for byte Gramine's (vectors made by
gramine-manifest / gramine-sgx-sign), and every trusted-file rule of Gramine's expansion holds."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import tempfile
import tomllib
from pathlib import Path

import pytest
from helpers import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from libos import sgx_manifest
from libos.sgx_manifest import ManifestError

VEC = Path(__file__).parent / "vectors" / "gramine-sign"
ROOT = VEC / "root"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expand(items: list, chroot: Path | None = None, jobs: int | None = None) -> list:
    data = {"sgx": {"trusted_files": items}}
    sgx_manifest.expand_trusted_files(data, chroot=chroot, jobs=jobs)
    return data["sgx"]["trusted_files"]


def uris(entries: list) -> list[str]:
    return [e["uri"] for e in entries]


# ------------------------------------------------------------------ Gramine's own outputs

@pytest.mark.parametrize("case", ["case1", "case2"])
def test_final_manifest_is_gramine_bytes(case: str) -> None:
    data = sgx_manifest.load(VEC / f"{case}.manifest")
    out = sgx_manifest.dumps(sgx_manifest.finalize(data, chroot=ROOT))
    assert out.encode() == (VEC / f"{case}.manifest.sgx").read_bytes()


@pytest.mark.parametrize("case", ["case1", "case2"])
def test_template_trusted_files_expand_to_gramine_lists(case: str) -> None:
    # the templates are valid TOML apart from their {{ }} values, which the check would refuse
    data = sgx_manifest.load(VEC / f"{case}.manifest.template")
    sgx_manifest.finalize(data, chroot=ROOT, check=False)
    expected = tomllib.loads((VEC / f"{case}.manifest").read_text())
    assert data["sgx"]["trusted_files"] == expected["sgx"]["trusted_files"]
    if case == "case1":  # what -Dlog_level=error and VEC_MODE=vector render
        data["loader"].update(log_level="error")
        data["loader"]["env"].update(MODE="vector")
    # Manifest()'s defaults, inserted in Gramine's order (case2: EDMM gives 1024G)
    assert sgx_manifest.dumps(data).encode() == (VEC / f"{case}.manifest").read_bytes()


def test_defaults_fill_loader_entrypoint_with_libos_hash() -> None:
    from libos import gramine_install

    data = sgx_manifest.loads('libos.entrypoint = "/x"\nfs.mounts = []\n')
    sgx_manifest.apply_defaults(data)
    libos = gramine_install.libos_path()
    assert data["loader"]["entrypoint"] == {"uri": f"file:{libos}", "sha256": sha(libos.read_bytes())}
    assert data["sgx"]["enclave_size"] == "256M" and data["sgx"]["max_threads"] == 4
    sgx_manifest.check(data)


def test_string_entries_become_tables_and_table_syntax_refused() -> None:
    data = {"loader": {"entrypoint": {"uri": "file:/x", "sha256": "0" * 64}},
            "sgx": {"trusted_files": ["file:/a", {"uri": "file:/b"}]}}
    sgx_manifest.apply_defaults(data)
    assert data["sgx"]["trusted_files"] == [{"uri": "file:/a"}, {"uri": "file:/b"}]
    with pytest.raises(ManifestError, match=r"sgx\.trusted_files: must be an array"):
        sgx_manifest.apply_defaults({"sgx": {"trusted_files": {"a": "file:/a"}}})
    with pytest.raises(ManifestError, match=r"loader\.entrypoint: must be a table"):
        sgx_manifest.apply_defaults({"loader": {"entrypoint": "file:/x"}})


# ------------------------------------------------------------------ expansion rules

@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("b", "B", "_x", ".hidden", "a", "\u00e9"):
        (tmp_path / "d" / name).write_bytes(name.encode())
    (tmp_path / "d" / "sub" / "deep").write_bytes(b"deep")
    return tmp_path


def test_folder_expanded_recursively_in_code_point_order(tree: Path) -> None:
    got = expand([f"file:{tree}/d/"], jobs=2)
    names = [".hidden", "B", "_x", "a", "b", "sub/deep", "\u00e9"]
    assert uris(got) == [f"file:{tree}/d/{n}" for n in names]
    assert [e["sha256"] for e in got] == [sha(Path(tree, "d", n).read_bytes()) for n in names]


def test_relative_paths_stay_relative(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    assert uris(expand(["file:./d/sub/", "file:d//a"])) == ["file:d/sub/deep", "file:d//a"]


def test_folder_without_slash_refused(tree: Path) -> None:
    with pytest.raises(ManifestError, match=r'sgx\.trusted_files\[1\]: .* is a folder: write it with a trailing "/"'):
        expand([f"file:{tree}/d/a", f"file:{tree}/d"])


def test_slash_on_a_file_refused(tree: Path) -> None:
    with pytest.raises(ManifestError, match='ends with "/" but is not a folder'):
        expand([f"file:{tree}/d/a/"])


def test_sha256_on_a_folder_refused(tree: Path) -> None:
    with pytest.raises(ManifestError, match="is a folder and can't have a sha256"):
        expand([{"uri": f"file:{tree}/d/", "sha256": "0" * 64}])


def test_duplicates_merged_first_position_hashed_wins(tree: Path) -> None:
    a = f"file:{tree}/d/a"
    given = "1" * 64  # a given hash is trusted, never recomputed
    got = expand([a, f"file:{tree}/d/sub/", {"uri": a, "sha256": given}, f"file:{tree}/d/sub/deep"])
    assert got == [{"uri": a, "sha256": given}, {"uri": f"file:{tree}/d/sub/deep", "sha256": sha(b"deep")}]


def test_duplicates_with_different_hashes_refused(tree: Path) -> None:
    a = f"file:{tree}/d/a"
    assert expand([{"uri": a, "sha256": "2" * 64}, {"uri": a, "sha256": "2" * 64}]) == [{"uri": a, "sha256": "2" * 64}]
    with pytest.raises(ManifestError, match=r"sgx\.trusted_files\[1\]: two different sha256 values"):
        expand([{"uri": a, "sha256": "2" * 64}, {"uri": a, "sha256": "3" * 64}])


@pytest.mark.parametrize("uri", ["http://example.com/x", "dev:/dev/null", "/etc/hostname"])
def test_non_file_uri_refused(uri: str) -> None:
    with pytest.raises(ManifestError, match=r"sgx\.trusted_files\[0\]: unsupported URI"):
        expand([uri])


def test_unknown_entry_keys_refused(tree: Path) -> None:
    with pytest.raises(ManifestError, match="unknown keys size"):
        expand([{"uri": f"file:{tree}/d/a", "size": 3}])


def test_special_files_and_dangling_links_skipped(tree: Path) -> None:
    d = tree / "d" / "sub"
    os.mkfifo(d / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "sock"))
    os.symlink("/nonexistent-i10-target", d / "dangling")
    os.symlink("/dev/null", d / "chardev")
    try:
        assert uris(expand([f"file:{d}/"])) == [f"file:{d}/deep"]
    finally:
        sock.close()


def test_symlinked_folders_not_descended_linked_files_kept_under_link(tree: Path) -> None:
    d = tree / "d" / "sub"
    os.symlink(tree / "d", d / "linkdir")
    os.symlink("deep", d / "linkfile")
    got = expand([f"file:{d}/"])
    assert got == [{"uri": f"file:{d}/deep", "sha256": sha(b"deep")},
                   {"uri": f"file:{d}/linkfile", "sha256": sha(b"deep")}]


def test_missing_file_names_entry(tree: Path) -> None:
    with pytest.raises(ManifestError, match=r"sgx\.trusted_files\[1\]: 'file:.*/nope': can't read") as info:
        expand([f"file:{tree}/d/a", f"file:{tree}/nope"])
    assert info.value.errno == errno.ENOENT


def test_parallel_hashes_equal_serial(tree: Path) -> None:
    big = tree / "d" / "sub" / "big"
    big.write_bytes(os.urandom(3 << 20))
    serial = expand([f"file:{tree}/d/"], jobs=1)
    assert expand([f"file:{tree}/d/"], jobs=4) == serial
    assert {"uri": f"file:{big}", "sha256": sha(big.read_bytes())} in serial


@pytest.fixture
def shared_dir():
    """A folder other users can reach (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="i10-manifest-shared-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the expansion as another user")
def test_unreadable_entries_skipped(shared_dir: Path) -> None:
    d = shared_dir / "t"
    (d / "closed").mkdir(parents=True)
    (d / "ok").write_bytes(b"ok")
    (d / "secret").write_bytes(b"s")
    (d / "secret").chmod(0)
    (d / "closed" / "inner").write_bytes(b"i")
    (d / "closed").chmod(0)
    d.chmod(0o755)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops root (its access(R_OK) checks are then real) and reports
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, json.dumps(expand([f"file:{d}/"])).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0
    assert json.loads(out) == [{"uri": f"file:{d}/ok", "sha256": sha(b"ok")}]
    # as root the same tree has everything
    assert uris(expand([f"file:{d}/"])) == [f"file:{d}/closed/inner", f"file:{d}/ok", f"file:{d}/secret"]


# ------------------------------------------------------------------ --chroot

def test_chroot_escapes_stay_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside-secret"
    outside.write_bytes(b"host secret")
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    (root / "app" / "f").write_bytes(b"inside")
    (root / str(tmp_path).lstrip("/")).mkdir(parents=True)
    (root / str(tmp_path).lstrip("/") / "outside-secret").write_bytes(b"chroot copy")
    os.symlink(outside, root / "app" / "abs")             # absolute: means <root><target>
    os.symlink("../../../../../../f", root / "app" / "up")  # .. stops at the chroot's top
    os.symlink("/app/f", root / "app" / "tofile")
    got = expand([f"file:{outside}", "file:/app/../../app/f", "file:/app/abs", "file:/app/tofile"], chroot=root)
    assert got == [{"uri": f"file:{outside}", "sha256": sha(b"chroot copy")},
                   {"uri": "file:/app/../../app/f", "sha256": sha(b"inside")},
                   {"uri": "file:/app/abs", "sha256": sha(b"chroot copy")},
                   {"uri": "file:/app/tofile", "sha256": sha(b"inside")}]
    with pytest.raises(ManifestError, match="can't read") as info:
        expand(["file:/app/up"], chroot=root)  # resolves to <root>/f, which does not exist
    assert info.value.errno == errno.ENOENT


def test_chroot_folder_entries_checked_as_gramine_does(tmp_path: Path) -> None:
    """Gramine checks a folder's entries on the path itself (links followed on the host): an
    absolute link whose target exists only inside the chroot is skipped; a relative one is kept."""
    root = tmp_path / "root"
    (root / "app" / "d").mkdir(parents=True)
    (root / "app" / "f").write_bytes(b"inside")
    os.symlink("/app/f-i10-absent-on-host", root / "app" / "d" / "abs")
    os.symlink("../f", root / "app" / "d" / "rel")
    assert not os.path.exists("/app/f-i10-absent-on-host")
    (root / "app" / "f-i10-absent-on-host").write_bytes(b"target")
    assert expand(["file:/app/d/"], chroot=root) == [{"uri": "file:/app/d/rel", "sha256": sha(b"inside")}]


def test_linked_folder_children_named_as_gramine_names_them(tmp_path: Path) -> None:
    """A folder URI through a link: in a chroot the children carry the resolved folder's path
    (Gramine builds them from the resolved real path), on the host the link's path."""
    (tmp_path / "app" / "tf").mkdir(parents=True)
    (tmp_path / "app" / "tf" / "a").write_bytes(b"a")
    os.symlink("tf", tmp_path / "app" / "linkdir")
    assert uris(expand(["file:/app/linkdir/"], chroot=tmp_path)) == ["file:/app/tf/a"]
    assert uris(expand([f"file:{tmp_path}/app/linkdir/"])) == [f"file:{tmp_path}/app/linkdir/a"]


def test_chroot_needs_absolute_paths_and_refuses_loops(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    os.symlink("loop2", tmp_path / "a" / "loop1")
    os.symlink("loop1", tmp_path / "a" / "loop2")
    with pytest.raises(ManifestError, match="is relative: with --chroot, trusted files must be absolute"):
        expand(["file:a/x"], chroot=tmp_path)
    with pytest.raises(ManifestError, match="too many levels of symbolic links") as info:
        expand(["file:/a/loop1"], chroot=tmp_path)
    assert info.value.errno == errno.ELOOP
    with pytest.raises(ManifestError, match="is not a folder inside the chroot") as info:
        expand(["file:/missing/x"], chroot=tmp_path)
    assert info.value.errno == errno.ENOTDIR


# ------------------------------------------------------------------ schema check

def _good() -> dict:
    data = sgx_manifest.load(VEC / "case1.manifest")
    sgx_manifest.apply_defaults(data)
    return data


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("libos"), r"^manifest failed validation: libos: required key is missing$"),
    (lambda d: d["fs"].pop("mounts"), r"fs\.mounts: required key is missing"),
    (lambda d: d["sgx"].update(debug="yes"), r"sgx\.debug: expected a boolean, got a string"),
    (lambda d: d["sgx"].update(bogus=1), r"sgx\.bogus: unknown key"),
    (lambda d: d["fs"]["mounts"].append({"type": "ramfs", "path": "/r"}),
     r'fs\.mounts\[2\]\.type: "ramfs" is not allowed \(expected one of: "chroot", "encrypted", "tmpfs"'),
    (lambda d: d["fs"]["mounts"][1].update(key_name=3), r"fs\.mounts\[1\]\.key_name: expected a string"),
    (lambda d: d["loader"].update(log_level="loud"), r'loader\.log_level: "loud" is not allowed'),
    (lambda d: d["sgx"]["cpu_features"].update(mpx="unspecified"), r"sgx\.cpu_features\.mpx"),
])
def test_check_names_the_key(change, message: str) -> None:
    data = _good()
    sgx_manifest.check(data)
    change(data)
    with pytest.raises(ManifestError, match=message):
        sgx_manifest.check(data)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.manifest"
    bad.write_text('a = 1\nb = = 2\n')
    with pytest.raises(ManifestError, match=rf"^{bad}: not valid TOML: .*line 2"):
        sgx_manifest.load(bad)


# ------------------------------------------------------------------ dumps: tomli_w's bytes

def test_dumps_long_trusted_files_are_tomli_w_bytes(tree: Path) -> None:
    import tomli_w

    for name in range(300):
        (tree / "d" / "sub" / f"f{name:03}").write_bytes(b"x" * name)
    data = sgx_manifest.loads('libos.entrypoint = "/x"\nfs.mounts = []\n'
                              f'sgx.trusted_files = ["file:{tree}/d/"]\nsgx.seal_key.flags_mask = "0x1"\n')
    sgx_manifest.finalize(data, check=False)
    assert len(data["sgx"]["trusted_files"]) > 300
    assert sgx_manifest._trusted_files_block(data) is not None  # written by the fast path
    assert sgx_manifest.dumps(data) == tomli_w.dumps(data)
    # no [sgx] scalars before the tables, and the array as the only table
    only = {"sgx": {"trusted_files": data["sgx"]["trusted_files"]}}
    assert sgx_manifest.dumps(only) == tomli_w.dumps(only)


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)


_hashed = st.fixed_dictionaries({"uri": st.one_of(_text, st.text("abc/._-\"\\\n\u00e9", min_size=1, max_size=40)
                                                  .map(lambda t: "file:/" + t)),
                                   "sha256": st.one_of(st.text("0123456789abcdef", min_size=64, max_size=64), _text)})


_plain = st.fixed_dictionaries({"uri": st.text("abc/._-\u00e9", min_size=4, max_size=80).map(lambda t: "file:/" + t),
                                 "sha256": st.text("0123456789abcdef", min_size=64, max_size=64)})
_trusted = st.one_of(st.lists(_plain, min_size=2, max_size=6),  # what the fast path writes
                     st.lists(st.one_of(_plain, _hashed, st.fixed_dictionaries({"uri": _text}), _text), max_size=6))


@given(_trusted, st.booleans())
@settings(max_examples=examples(200), deadline=None)
def test_dumps_equals_tomli_w_for_any_trusted_files(items: list, scalars_first: bool) -> None:
    import tomli_w

    data = {"sgx": {"debug": True, "trusted_files": items} if scalars_first else {"trusted_files": items, "x": 1},
            "loader": {"entrypoint": {"uri": "file:/x"}}}
    assert sgx_manifest.dumps(data) == tomli_w.dumps(data)
