"""Path binding as Gramine does it, and the errors of mounts whose host path is missing.

Gramine binds a file of an encrypted mount to ``get_norm_path(<URI path as written>/<path below
the mount>)``: relative stays relative (``uri = "file:enc/"`` -> ``enc/NAME``, the binding of every
Gramine vector made with ``pf_crypt encrypt -o enc/NAME``). Checked through ``LibOS.boot``, a real
``libos mount`` (FUSE), ``pfs encrypt --manifest`` and ``pfs mount``'s binding check.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fuse_helpers import LIBOS, PFS, Mounter, fusermount_u, mounted, one_line_error, run

from libos import LibOS
from libos.binding import bound_path_by_manifest
from libos.errors import BindingError, MountError
from pal import HostFile
from pfs import ProtectedFile
from pfs.inspect import read_full_info

KEY_HEX = "00112233445566778899aabbccddeeff"
KEY = bytes.fromhex(KEY_HEX)


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gramine_set(vectors_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list[dict]]:
    """A writable copy of the vectors' ``enc/`` and ``enc_v1/`` (same relative layout), and the
    MANIFEST entries of the v2 and v1 vectors present."""
    doc = json.loads((vectors_dir / "MANIFEST.json").read_text())
    root = tmp_path_factory.mktemp("gramine-set")
    present: dict[str, list[dict]] = {"vectors": [], "v1_vectors": []}
    for kind in present:
        for entry in doc[kind]:
            src = vectors_dir / entry["encrypted_file"]
            if src.is_file():
                dst = root / entry["encrypted_file"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                present[kind].append(entry)
    assert present["vectors"] and present["v1_vectors"], f"no vectors found in {vectors_dir}"
    assert all(e["embedded_path"] == e["encrypted_file"] for e in present["vectors"] + present["v1_vectors"])
    (root / "key.bin").write_bytes((vectors_dir / "wrap_key.bin").read_bytes())
    return root, present["vectors"], present["v1_vectors"]


def _vector_manifest(root: Path, name: str, vectors_dir: Path, extra: str = "") -> Path:
    wrap = (vectors_dir / "wrap_key.bin").read_bytes().hex()
    path = root / name
    path.write_text(f'''
fs.insecure__keys.default = "{wrap}"
fs.mounts = [
  {{ type = "encrypted", path = "/enc", uri = "file:enc/" }},
  {{ type = "encrypted", path = "/v1", uri = "file:enc_v1/" }},
{extra}]
''')
    return path


def _bound(host: Path, key: bytes = KEY) -> str:
    with HostFile(str(host)) as f:
        return read_full_info(f, key)["bound_path"]


def _read_all(p, path: str) -> bytes:
    fd = p.open(path)
    try:
        out = bytearray()
        while chunk := p.read(fd, 1 << 20):
            out += chunk
        return bytes(out)
    finally:
        p.close(fd)


# ---------------------------------------------------------------------- item 14: LibOS.boot


def test_boot_reads_every_gramine_vector_under_a_relative_uri(gramine_set, vectors_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root, v2, v1 = gramine_set
    monkeypatch.chdir(root)
    lo = LibOS.boot(_vector_manifest(root, "boot.toml", vectors_dir))
    p = lo.process()
    for entry in v2:
        assert _read_all(p, "/" + entry["encrypted_file"]) == (vectors_dir / entry["plaintext_file"]).read_bytes(), \
            entry["name"]
    for entry in v1:
        got = _read_all(p, "/v1/" + entry["name"])
        assert got == (vectors_dir / entry["plaintext_file"]).read_bytes(), entry["name"]
    lo.shutdown()


def test_boot_single_file_mounts_of_gramine_vectors(gramine_set, vectors_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``uri = "file:enc/NAME"`` binds to ``enc/NAME``; the URI is normalized (``./enc//NAME``)."""
    root, v2, _ = gramine_set
    monkeypatch.chdir(root)
    a, b = v2[0], v2[-1]
    (root / "single.toml").write_text(f'''
fs.insecure__keys.default = "{(vectors_dir / "wrap_key.bin").read_bytes().hex()}"
fs.mounts = [
  {{ type = "encrypted", path = "/a", uri = "file:{a["encrypted_file"]}" }},
  {{ type = "encrypted", path = "/b", uri = "file:./enc//{b["name"]}" }},
]
''')
    p = LibOS.boot(root / "single.toml").process()
    assert _read_all(p, "/a") == (vectors_dir / a["plaintext_file"]).read_bytes()
    assert _read_all(p, "/b") == (vectors_dir / b["plaintext_file"]).read_bytes()


@pytest.mark.parametrize("uri, bound_dir", [
    ("file:out/", "out"),
    ("file:./out//", "out"),
    ("file:sub/../out", "out"),
    ("file:{tmp}/out/", "{tmp}/out"),  # an absolute URI stays absolute
])
def test_files_written_through_the_libos_are_bound_as_gramine_opens_them(tmp_path: Path, uri: str,
                                                                         bound_dir: str) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "sub").mkdir()
    uri, bound_dir = uri.format(tmp=tmp_path), bound_dir.format(tmp=tmp_path)
    (tmp_path / "m.toml").write_text(f'fs.insecure__keys.default = "{KEY_HEX}"\n'
                                     f'fs.mounts = [ {{ type = "encrypted", path = "/data", uri = "{uri}" }} ]\n')
    lo = LibOS.boot(tmp_path / "m.toml")
    p = lo.process()
    p.mkdir("/data/a")
    p.mkdir("/data/a/b")
    for name in ("/data/top.txt", "/data/a/b/deep.txt", "/data/a/moved.txt"):
        fd = p.open(name, os.O_CREAT | os.O_WRONLY, 0o600)
        p.write(fd, name.encode() * 100)
        p.close(fd)
    p.rename("/data/a", "/data/c")  # a folder: every file below is rebound
    p.rename("/data/c/moved.txt", "/data/c/b/renamed.txt")
    lo.shutdown()
    out = tmp_path / "out"
    assert _bound(out / "top.txt") == f"{bound_dir}/top.txt"
    assert _bound(out / "c" / "b" / "deep.txt") == f"{bound_dir}/c/b/deep.txt"
    assert _bound(out / "c" / "b" / "renamed.txt") == f"{bound_dir}/c/b/renamed.txt"
    # and what Gramine's pf_crypt -V / our decrypt check would accept
    with ProtectedFile.open(HostFile(str(out / "c" / "b" / "deep.txt")), KEY, f"{bound_dir}/c/b/deep.txt") as pf:
        assert pf.read(0, pf.size) == b"/data/a/b/deep.txt" * 100


# ---------------------------------------------------------------------- item 14: libos mount (FUSE)


def test_libos_mount_reads_every_gramine_vector_under_a_relative_uri(gramine_set, vectors_dir: Path,
                                                                    tmp_path: Path, mounter: Mounter) -> None:
    root, v2, v1 = gramine_set
    (root / "out").mkdir(exist_ok=True)
    manifest = _vector_manifest(root, "fuse.toml", vectors_dir,
                                '  { type = "encrypted", path = "/out", uri = "file:out/" },\n')
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = mounter.foreground([LIBOS, "mount", manifest.name, mnt], mnt, cwd=root)
    for entry in v2:
        assert (mnt / entry["encrypted_file"]).read_bytes() == (vectors_dir / entry["plaintext_file"]).read_bytes(), \
            entry["name"]
    for entry in v1:
        assert (mnt / "v1" / entry["name"]).read_bytes() == (vectors_dir / entry["plaintext_file"]).read_bytes()
    (mnt / "out" / "d").mkdir()
    (mnt / "out" / "d" / "result.txt").write_bytes(b"through FUSE\n" * 500)
    m.unmount()
    key = (vectors_dir / "wrap_key.bin").read_bytes()
    assert _bound(root / "out" / "d" / "result.txt", key) == "out/d/result.txt"


# ---------------------------------------------------------------------- item 21: missing host paths


def test_boot_names_the_mount_whose_host_path_is_missing(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text(f'fs.insecure__keys.default = "{KEY_HEX}"\n'
                                     'fs.mounts = [ { type = "tmpfs", path = "/tmp" },\n'
                                     '  { type = "encrypted", path = "/data", uri = "file:nothere/" } ]\n')
    with pytest.raises(MountError) as e:
        LibOS.boot(tmp_path / "m.toml")
    assert e.value.errno == errno.ENOENT
    text = str(e.value)
    assert "fs.mounts[1]" in text and "/data" in text and "nothere/" in text and "does not exist" in text
    assert e.value.key == "fs.mounts[1]" and e.value.host_path == f"{tmp_path}/nothere/"
    (tmp_path / "r.toml").write_text('fs.root = { type = "chroot", uri = "file:noroot" }\n')
    with pytest.raises(MountError) as e:
        LibOS.boot(tmp_path / "r.toml")
    assert "fs.root" in str(e.value) and "noroot" in str(e.value)


def test_encrypted_single_file_mount_of_a_file_not_made_yet(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "m.toml").write_text(f'fs.insecure__keys.default = "{KEY_HEX}"\n'
                                     'fs.mounts = [ { type = "encrypted", path = "/result.txt", '
                                     'uri = "file:results/result.txt" } ]\n')
    lo = LibOS.boot(tmp_path / "m.toml")
    p = lo.process()
    with pytest.raises(OSError) as e:
        p.stat("/result.txt")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        p.open("/result.txt")
    assert e.value.errno == errno.ENOENT
    assert "result.txt" not in p.listdir("/")
    assert not (tmp_path / "results" / "result.txt").exists()  # nothing made until an O_CREAT open
    fd = p.open("/result.txt", os.O_CREAT | os.O_WRONLY, 0o640)
    p.write(fd, b"the result\n")
    p.close(fd)
    assert p.stat("/result.txt").st_size == 11
    assert "result.txt" in p.listdir("/")
    with pytest.raises(OSError) as e:
        p.open("/result.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    assert e.value.errno == errno.EEXIST
    lo.shutdown()
    host = tmp_path / "results" / "result.txt"
    assert (host.stat().st_mode & 0o777) == 0o640
    assert _bound(host) == "results/result.txt"
    # booted again, the file is there
    assert _read_all(LibOS.boot(tmp_path / "m.toml").process(), "/result.txt") == b"the result\n"


def test_absent_single_file_mount_point_takes_only_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "m.toml").write_text(f'fs.insecure__keys.default = "{KEY_HEX}"\n'
                                     'fs.mounts = [ { type = "encrypted", path = "/r", uri = "file:results/r" } ]\n')
    p = LibOS.boot(tmp_path / "m.toml").process()
    fd = p.open("/elsewhere", os.O_CREAT | os.O_WRONLY)  # in the (tmpfs) root
    p.close(fd)
    for call, args, code in ((p.mkdir, ("/r",), errno.EPERM), (p.symlink, ("/elsewhere", "/r"), errno.EPERM),
                             (p.mkfifo, ("/r",), errno.EPERM), (p.rename, ("/elsewhere", "/r"), errno.EXDEV),
                             (p.link, ("/elsewhere", "/r"), errno.EXDEV)):
        with pytest.raises(OSError) as e:
            call(*args)
        assert e.value.errno == code, (call, e.value)
    assert not (tmp_path / "results" / "r").exists()
    p.mknod("/r", 0o600)  # a regular file: the mount makes it
    assert p.stat("/r").st_size == 0
    assert _bound(tmp_path / "results" / "r") == "results/r"


def test_single_file_mount_needs_its_folder(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text(f'fs.insecure__keys.default = "{KEY_HEX}"\n'
                                     'fs.mounts = [ { type = "encrypted", path = "/r", uri = "file:nodir/r" } ]\n')
    with pytest.raises(MountError) as e:
        LibOS.boot(tmp_path / "m.toml")
    assert "fs.mounts[0]" in str(e.value) and "nodir/r" in str(e.value)


def _refused_mount(argv: list, cwd: Path, mnt: Path) -> subprocess.CompletedProcess:
    """Run a mount command that must refuse to mount (unmounting at once if it did mount)."""
    proc = run(argv, cwd=cwd)
    if mounted(mnt):
        fusermount_u(mnt)
        raise AssertionError(f"{argv} mounted {mnt}: {proc.stderr}")
    return proc


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    return one_line_error(proc, *needles, returncode=1)


def test_libos_mount_names_the_missing_mount_path(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "m.toml").write_text('fs.mounts = [ { type = "chroot", path = "/app", uri = "file:noapp/" } ]\n')
    proc = _refused_mount([LIBOS, "mount", "m.toml", "mnt"], tmp_path, tmp_path / "mnt")
    line = _one_line_error(proc, "fs.mounts[0]", "/app", "noapp/", "does not exist")
    assert "manifest" not in line
    _one_line_error(run([LIBOS, "mount", "missing.toml", "mnt"], cwd=tmp_path), "manifest 'missing.toml' not found")


def test_libos_mount_single_file_mount_created_on_write(tmp_path: Path, mounter: Mounter) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "mnt").mkdir()
    (tmp_path / "m.toml").write_text(f'fs.insecure__keys.default = "{KEY_HEX}"\n'
                                     'fs.mounts = [ { type = "encrypted", path = "/result.txt", '
                                     'uri = "file:results/result.txt" } ]\n')
    m = mounter.foreground([LIBOS, "mount", "m.toml", "mnt"], "mnt", cwd=tmp_path)
    view = tmp_path / "mnt"
    assert not (view / "result.txt").exists()
    (view / "result.txt").write_bytes(b"written through FUSE\n")
    assert (view / "result.txt").read_bytes() == b"written through FUSE\n"
    m.unmount()
    assert _bound(tmp_path / "results" / "result.txt") == "results/result.txt"


# ---------------------------------------------------------------------- item 15: encrypt --manifest


def _app(tmp_path: Path) -> Path:
    """A key, plaintext inputs and a manifest with a folder and a single-file encrypted mount."""
    (tmp_path / "key.bin").write_bytes(KEY)
    (tmp_path / "plain" / "sub").mkdir(parents=True)
    (tmp_path / "plain" / "a.txt").write_text("alpha\n")
    (tmp_path / "plain" / "sub" / "b.txt").write_text("beta\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.toml").write_text(f'''
fs.insecure__keys.default = "{KEY_HEX}"
fs.mounts = [
  {{ type = "encrypted", path = "/data", uri = "file:../enc/" }},
  {{ type = "encrypted", path = "/cfg.txt", uri = "file:conf/cfg.txt" }},
]
''')
    return tmp_path / "app" / "app.toml"


def test_encrypt_manifest_binds_as_the_mount_opens(tmp_path: Path) -> None:
    manifest = _app(tmp_path)
    (tmp_path / "app" / "conf").mkdir()
    proc = run([PFS, "encrypt", "-w", "key.bin", "-i", "plain", "-o", "enc", "--manifest", manifest], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "enc/a.txt -> bound to ../enc/a.txt" in proc.stdout
    assert _bound(tmp_path / "enc" / "sub" / "b.txt") == "../enc/sub/b.txt"
    proc = run([PFS, "encrypt", "-w", "../key.bin", "-i", "../plain/a.txt", "-o", "conf/cfg.txt", "--manifest",
                "app.toml"], cwd=tmp_path / "app")
    assert proc.returncode == 0, proc.stderr
    assert _bound(tmp_path / "app" / "conf" / "cfg.txt") == "conf/cfg.txt"
    # what the LibOS (as Gramine) opens them as
    lo = LibOS.boot(manifest)
    p = lo.process()
    assert _read_all(p, "/data/sub/b.txt") == b"beta\n"
    assert _read_all(p, "/cfg.txt") == b"alpha\n"


def test_encrypt_manifest_refuses_an_uncovered_output(tmp_path: Path) -> None:
    manifest = _app(tmp_path)
    proc = run([PFS, "encrypt", "-w", "key.bin", "-i", "plain", "-o", "elsewhere", "--manifest", manifest],
               cwd=tmp_path)
    _one_line_error(proc, "no encrypted mount", "covers 'elsewhere'", "/data")
    assert not (tmp_path / "elsewhere").exists()
    proc = run([PFS, "encrypt", "-w", "key.bin", "-i", "plain/a.txt", "-o", "enc/a", "--manifest", manifest,
                "--bind-path", "x"], cwd=tmp_path)
    assert proc.returncode == 2 and "not both" in proc.stderr
    (tmp_path / "bad.toml").write_text("fs.mounts = 3\n")
    proc = run([PFS, "encrypt", "-w", "key.bin", "-i", "plain/a.txt", "-o", "enc/a", "--manifest", "bad.toml"],
               cwd=tmp_path)
    _one_line_error(proc, "bad.toml", "fs.mounts")
    assert not (tmp_path / "enc").exists()


def test_bound_path_by_manifest(tmp_path: Path) -> None:
    manifest = _app(tmp_path)
    assert bound_path_by_manifest(manifest, str(tmp_path / "enc" / "x" / "y")) == "../enc/x/y"
    assert bound_path_by_manifest(manifest, str(tmp_path / "enc")) == "../enc"
    assert bound_path_by_manifest(manifest, str(tmp_path / "app" / "conf" / "cfg.txt")) == "conf/cfg.txt"
    (tmp_path / "enc").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "enc")  # the same host folder by another name
    assert bound_path_by_manifest(manifest, str(tmp_path / "link" / "y")) == "../enc/y"
    with pytest.raises(BindingError) as e:
        bound_path_by_manifest(manifest, str(tmp_path / "encx" / "y"))
    assert e.value.errno == errno.EINVAL


# ---------------------------------------------------------------------- item 15: pfs mount checks the binding


def test_pfs_mount_says_which_bind_prefix_fits(tmp_path: Path, mounter: Mounter) -> None:
    (tmp_path / "key.bin").write_bytes(KEY)
    (tmp_path / "plain" / "sub").mkdir(parents=True)
    (tmp_path / "plain" / "sub" / "b.txt").write_text("beta\n")
    (tmp_path / "mnt").mkdir()
    run([PFS, "encrypt", "-w", "key.bin", "-i", "plain", "-o", "enc", "--bind-prefix", "/data/app"],
        cwd=tmp_path, check=True)
    mnt = tmp_path / "mnt"
    proc = _refused_mount([PFS, "mount", "-w", "key.bin", "enc", "mnt"], tmp_path, mnt)
    _one_line_error(proc, "'enc/sub/b.txt' is bound to '/data/app/sub/b.txt'", "--bind-prefix /data/app",
                    "not mounting")
    proc = _refused_mount([PFS, "mount", "-w", "key.bin", "enc", "mnt", "--bind-prefix", "/data"], tmp_path, mnt)
    _one_line_error(proc, "would open it as '/data/sub/b.txt'", "--bind-prefix /data/app")
    # the advice is right
    mounter.pfs(tmp_path / "key.bin", "enc", "mnt", "--bind-prefix", "/data/app", cwd=tmp_path)
    assert (tmp_path / "mnt" / "sub" / "b.txt").read_text() == "beta\n"


def test_pfs_mount_binding_advice_for_other_layouts(tmp_path: Path) -> None:
    (tmp_path / "key.bin").write_bytes(KEY)
    (tmp_path / "plain.txt").write_text("x\n")
    (tmp_path / "mnt").mkdir()
    (tmp_path / "enc").mkdir()
    run([PFS, "encrypt", "-w", "../key.bin", "-i", "../plain.txt", "-o", "f.txt"], cwd=tmp_path / "enc", check=True)
    mnt = tmp_path / "mnt"
    _one_line_error(_refused_mount([PFS, "mount", "-w", "key.bin", "enc", "mnt"], tmp_path, mnt), "bound to 'f.txt'",
                    "mount it from inside")
    run([PFS, "encrypt", "-w", "key.bin", "-i", "plain.txt", "-o", "enc/f.txt", "--bind-path", "zzz", "--force"],
        cwd=tmp_path, check=True)
    _one_line_error(_refused_mount([PFS, "mount", "-w", "key.bin", "enc", "mnt"], tmp_path, mnt), "bound to 'zzz'",
                    "no --bind-prefix fits")


# ---------------------------------------------------------------------- item 15: the demo's sample manifest


def test_sample_manifest_reads_what_encrypt_manifest_made(tmp_path: Path) -> None:
    """What ``make demo`` does: samples/data encrypted with --manifest samples/app.manifest.toml
    (copied into the application's folder), read back through the LibOS as /data/..."""
    repo = Path(__file__).resolve().parents[1]
    shutil.copyfile(repo / "samples" / "app.manifest.toml", tmp_path / "app.manifest.toml")
    (tmp_path / "key.bin").write_bytes(KEY)
    run([PFS, "encrypt", "-q", "-w", "key.bin", "-i", repo / "samples" / "data", "-o", "enc", "--manifest",
         "app.manifest.toml"], cwd=tmp_path, check=True)
    assert _bound(tmp_path / "enc" / "hello.txt") == "enc/hello.txt"
    p = LibOS.boot(tmp_path / "app.manifest.toml").process()
    fd = p.open("/dev/attestation/keys/default", os.O_WRONLY)
    p.write(fd, KEY)
    p.close(fd)
    files = [f for f in (repo / "samples" / "data").rglob("*") if f.is_file()]
    assert files
    for f in files:
        assert _read_all(p, "/data/" + f.relative_to(repo / "samples" / "data").as_posix()) == f.read_bytes()
