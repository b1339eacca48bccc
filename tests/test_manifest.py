"""libos.manifest: Gramine-syntax manifests are loaded, resolved and validated with errors that name the key."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from libos.manifest import (
    Manifest,
    ManifestError,
    MountSpec,
    TrustedFile,
    load_manifest,
    loads_manifest,
)

DATA = Path(__file__).parent / "data" / "manifests"
GRAMINE = "/usr/lib/x86_64-linux-gnu/gramine"


def write(tmp_path: Path, text: str, name: str = "app.manifest") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, **kw) -> Manifest:
    return loads_manifest(text, base_dir=tmp_path, host_env={}, **kw)


def error_for(tmp_path: Path, text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_text(tmp_path, text)
    return info.value


# --- the example manifests -------------------------------------------------------------------------


def test_helloworld_example_loads():
    m = load_manifest(DATA / "helloworld.manifest", host_env={})
    assert m.warnings == []
    assert m.entrypoint == "/helloworld"
    assert m.loader_entrypoint == f"{GRAMINE}/libsysdb.so"
    assert m.log_level == "error"
    assert m.argv is None
    assert m.env == {"LD_LIBRARY_PATH": "/lib"}
    assert m.root is None
    assert m.start_dir == "/"
    assert m.mounts == [
        MountSpec(type="chroot", path="/lib", uri=f"{GRAMINE}/runtime/glibc"),
        MountSpec(type="chroot", path="/helloworld", uri=str(DATA / "helloworld")),
    ]
    assert [t.path for t in m.trusted_files] == [
        f"{GRAMINE}/libsysdb.so", str(DATA / "helloworld"), f"{GRAMINE}/runtime/glibc/"]
    assert all(t.sha256 is None for t in m.trusted_files)
    assert [t.is_dir for t in m.trusted_files] == [False, False, True]
    assert m.allowed_files == []
    assert m.file_check_policy == "strict"
    assert m.keys == {} and m.keys_missing == []
    assert m.source == str(DATA / "helloworld.manifest")
    assert m.raw["sgx"]["debug"] is True and m.raw["sgx"]["edmm_enable"] is False


def test_python_example_loads():
    m = load_manifest(DATA / "python.manifest.sgx", host_env={"LANG": "C.UTF-8", "SECRET": "x"})
    assert m.warnings == []
    assert m.entrypoint == "/usr/bin/python3.11"
    assert m.loader_entrypoint == f"{GRAMINE}/libsysdb.so"
    assert m.argv == ["python3", "scripts/hello.py", "--out", "/data/result.txt"]
    assert m.env == {
        "LD_LIBRARY_PATH": "/lib:/lib/x86_64-linux-gnu:/usr/lib:/usr/lib/x86_64-linux-gnu",
        "OMP_NUM_THREADS": "4",
        "PYTHONHASHSEED": "0",
        "LANG": "C.UTF-8",
    }
    assert m.start_dir == "/app"
    assert [(s.type, s.path) for s in m.mounts] == [
        ("chroot", "/lib"), ("chroot", "/lib/x86_64-linux-gnu"), ("chroot", "/usr"), ("chroot", "/etc"),
        ("chroot", "/app"), ("tmpfs", "/tmp"), ("encrypted", "/data")]
    assert m.mounts[4].uri == str(DATA / "scripts") + "/"
    assert m.mounts[5] == MountSpec(type="tmpfs", path="/tmp", uri=None)
    assert m.mounts[6] == MountSpec(type="encrypted", path="/data", uri=str(DATA / "enc-data") + "/",
                                    key_name="default")
    assert m.keys == {"default": bytes.fromhex("ffeeddccbbaa99887766554433221100")}
    assert m.keys_missing == []
    assert len(m.trusted_files) == 7
    assert m.trusted_files[1] == TrustedFile(
        path="/usr/bin/python3.11", sha256=hashlib.sha256(b"python3.11").digest(), uri="file:/usr/bin/python3.11")
    assert m.trusted_files[6].path == str(DATA / "scripts" / "hello.py")
    assert all(t.sha256 is not None and len(t.sha256) == 32 for t in m.trusted_files)
    assert m.allowed_files == ["/etc/nsswitch.conf", "/etc/hosts", "/etc/group", "/etc/passwd", "/etc/resolv.conf"]
    assert m.raw["sgx"]["enclave_size"] == "1G" and m.raw["sgx"]["max_threads"] == 32
    assert m.raw["sys"]["enable_sigterm_injection"] is True


def test_manifest_is_frozen():
    m = loads_manifest('libos.entrypoint = "/a"')
    with pytest.raises(AttributeError):
        m.entrypoint = "/b"  # type: ignore[misc]
    assert "ffee" not in repr(load_manifest(DATA / "python.manifest.sgx", host_env={}))  # keys stay out of repr


# --- errors ------------------------------------------------------------------------------------------

ENC_KEY = 'fs.insecure__keys.default = "00112233445566778899aabbccddeeff"\n'

BAD = [
    # (manifest text, key the error must name, words the message must contain)
    ('loader.argv = "x"', "loader.argv", "expected an array of strings, got string"),
    ('loader.argv = ["a", 1]', "loader.argv[1]", "expected a string, got integer 1"),
    ("loader.argv0_override = 3", "loader.argv0_override", "expected a string"),
    ("libos.entrypoint = true", "libos.entrypoint", "expected a string, got boolean"),
    ('loader.entrypoint = "/usr/lib/libsysdb.so"', "loader.entrypoint", 'must start with "file:"'),
    ('loader.log_level = "loud"', "loader.log_level", 'unknown log level "loud"'),
    ("loader.env.X = 1", "loader.env.X", "expected a string"),
    ('loader.env.X = { value = "a", passthrough = true }', "loader.env.X", "both value and passthrough"),
    ("loader.env.X = { passthrough = false }", "loader.env.X.passthrough", "false is not allowed"),
    ("loader.env.X = {}", "loader.env.X", "neither value nor passthrough"),
    ('fs.mounts = { path = "/a", uri = "file:a" }', "fs.mounts", "expected an array of mount tables, got table"),
    ('fs.mounts = ["file:a"]', "fs.mounts[0]", "expected a table"),
    ('fs.mounts = [{ uri = "file:a" }]', "fs.mounts[0].path", "missing"),
    ('fs.mounts = [{ path = "/a", uri = "file:a" }, { path = "b", uri = "file:b" }]',
     "fs.mounts[1].path", 'path "b" is relative'),
    ('fs.mounts = [{ path = "/lib", uri = "file:a" }, { path = "/lib/", uri = "file:b" }]',
     "fs.mounts[1].path", 'duplicate mount path "/lib" (already mounted by fs.mounts[0])'),
    ('fs.mounts = [{ path = "/", uri = "file:a" }]', "fs.mounts[0].path", "fs.root"),
    ('fs.mounts = [{ path = "/a", uri = "/host/a" }]', "fs.mounts[0].uri", 'URI "/host/a" must start with "file:"'),
    ('fs.mounts = [{ path = "/a", uri = "file:" }]', "fs.mounts[0].uri", "names no host path"),
    ('fs.mounts = [{ path = "/a" }]', "fs.mounts[0].uri", "missing"),
    ('fs.mounts = [{ type = "encrypted", path = "/a" }]', "fs.mounts[0].uri", "missing"),
    ('fs.mounts = [{ path = "/a", uri = "file:a", key_name = "k" }]', "fs.mounts[0].key_name",
     "only encrypted mounts"),
    ('fs.mounts = [{ type = "tmpfs", path = "/a", enable_recovery = true }]', "fs.mounts[0].enable_recovery",
     "only encrypted mounts"),
    ('fs.mounts = [{ type = "tmpfs", path = "/a", readonly = true }]', "fs.mounts[0].readonly",
     "chroot mounts only"),
    ('fs.mounts = [{ path = "/a", uri = "file:a", readonly = "yes" }]', "fs.mounts[0].readonly",
     "expected a boolean"),
    ('fs.mounts = [{ type = 7, path = "/a" }]', "fs.mounts[0].type", "expected a string"),
    ('fs.root = { uri = "file:r", path = "/x" }', "fs.root.path", 'always mounted at "/"'),
    ('fs.root = { type = "overlay", uri = "file:r" }', "fs.root.type", 'unknown mount type "overlay"'),
    ('fs.start_dir = "app"', "fs.start_dir", "relative"),
    ('fs.insecure__keys.default = "0011"', "fs.insecure__keys.default", "expected 32 hex characters"),
    ('fs.insecure__keys.default = "zz112233445566778899aabbccddeeff"', "fs.insecure__keys.default",
     "expected 32 hex characters"),
    ("fs.insecure__keys.default = 5", "fs.insecure__keys.default", "expected a string of 32 hex characters"),
    ('sgx.trusted_files = [{ uri = "file:a", sha256 = "abcd" }]', "sgx.trusted_files[0].sha256",
     "expected 64 hex characters"),
    ('sgx.trusted_files = [{ uri = "file:d/", sha256 = "' + "ab" * 32 + '" }]', "sgx.trusted_files[0].sha256",
     "directory URI cannot have a sha256"),
    ('sgx.trusted_files = [{ sha256 = "' + "ab" * 32 + '" }]', "sgx.trusted_files[0].uri", "missing"),
    ('sgx.trusted_files = ["file:a", "/etc/passwd"]', "sgx.trusted_files[1]", 'must start with "file:"'),
    ('sgx.trusted_files = [3]', "sgx.trusted_files[0]", "got integer 3"),
    ('sgx.trusted_files = "file:a"', "sgx.trusted_files", "expected an array"),
    ('sgx.allowed_files = ["dev:tty"]', "sgx.allowed_files[0]", 'must start with "file:"'),
    ('sgx.file_check_policy = "allow_all"', "sgx.file_check_policy",
     'unknown policy "allow_all" (expected one of: strict, allow_all_but_log)'),
    ('sgx.debug = "yes"', "sgx.debug", "expected a boolean"),
    ('sgx.max_threads = "32"', "sgx.max_threads", "expected an integer, got string"),
    ("sgx.max_threads = true", "sgx.max_threads", "expected an integer, got boolean"),
    ('sgx.enclave_size = "lots"', "sgx.enclave_size", 'invalid size "lots"'),
    ('sgx = "none"', "sgx", "expected a table"),
]


@pytest.mark.parametrize(("text", "key", "words"), BAD, ids=[b[1] + ":" + b[2][:24] for b in BAD])
def test_invalid_manifest_names_the_key(tmp_path, text, key, words):
    err = error_for(tmp_path, text)
    assert isinstance(err, ValueError)
    assert err.key == key
    assert str(err).startswith(key + ": ")
    assert words in str(err)
    assert "\n" not in str(err)


def test_unknown_mount_type_message(tmp_path):
    text = """
fs.mounts = [
  { path = "/a", uri = "file:a" },
  { type = "tmpfs", path = "/b" },
  { type = "ramfs", path = "/c" },
]
"""
    err = error_for(tmp_path, text)
    assert err.key == "fs.mounts[2].type"
    assert str(err) == 'fs.mounts[2].type: unknown mount type "ramfs" (expected one of: chroot, encrypted, tmpfs)'


def test_bad_key_value_is_not_echoed(tmp_path):
    err = error_for(tmp_path, 'fs.insecure__keys.k = "secretsecretsecretsecret"')
    assert "secret" not in str(err)


def test_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, 'libos.entrypoint = "/a"\n\nfs.mounts = [\n  { path = "/a", uri = "file:a", },\n]\n')
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    err = info.value
    assert err.key is None
    assert err.line == 4 and err.column is not None
    assert "TOML syntax error" in str(err) and "line 4, column" in str(err)
    assert str(err).startswith(f"{path}: ")  # errors from a file name the file
    assert err.source == str(path)


def test_duplicate_toml_key_is_a_syntax_error(tmp_path):
    err = error_for(tmp_path, 'sgx.debug = true\nsgx.debug = false\n')
    assert err.line == 2 and "TOML syntax error" in str(err)


def test_file_errors_name_the_file(tmp_path):
    path = write(tmp_path, 'loader.argv = "x"')
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert info.value.key == "loader.argv"
    assert info.value.message.startswith("loader.argv: ")
    assert str(info.value) == f"{path}: {info.value.message}"


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.manifest"
    path.write_bytes(b'libos.entrypoint = "/\xff"\n')
    with pytest.raises(ManifestError, match="UTF-8"):
        load_manifest(path)


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_manifest(tmp_path / "nope.manifest")


# --- encrypted mounts and keys -------------------------------------------------------------------------


@pytest.mark.parametrize(("mounts", "key", "words"), [
    ('{ type = "encrypted", path = "/data", uri = "file:a/" },'
     '{ type = "encrypted", path = "/data/sub", uri = "file:b/" }', "fs.mounts[1].path", "must not nest"),
    ('{ type = "encrypted", path = "/data/sub", uri = "file:a/" },'
     '{ type = "encrypted", path = "/data", uri = "file:b/" }', "fs.mounts[1].path", "overlaps"),
    ('{ type = "encrypted", path = "/x", uri = "file:enc/" },'
     '{ type = "encrypted", path = "/y", uri = "file:./enc" }', "fs.mounts[1].uri", "the same host path"),
    ('{ type = "encrypted", path = "/x", uri = "file:enc/" },'
     '{ path = "/c", uri = "file:c" },'
     '{ type = "encrypted", path = "/y", uri = "file:enc/inner/" }', "fs.mounts[2].uri", "overlapping fs.mounts[0]"),
    ('{ type = "encrypted", path = "/x", uri = "file:enc/inner/f" },'
     '{ type = "encrypted", path = "/y", uri = "file:enc/" }', "fs.mounts[1].uri", "overlapping"),
])
def test_overlapping_encrypted_mounts(tmp_path, mounts, key, words):
    err = error_for(tmp_path, ENC_KEY + f"fs.mounts = [{mounts}]")
    assert err.key == key
    assert words in str(err)


def test_encrypted_mount_nested_in_encrypted_root(tmp_path):
    err = error_for(tmp_path, ENC_KEY + 'fs.root = { type = "encrypted", uri = "file:root/" }\n'
                    'fs.mounts = [{ type = "encrypted", path = "/d", uri = "file:other/" }]')
    assert err.key == "fs.mounts[0].path"
    assert "fs.root" in str(err)


def test_non_overlapping_encrypted_mounts_are_fine(tmp_path):
    m = load_text(tmp_path, ENC_KEY + """
fs.mounts = [
  { type = "encrypted", path = "/data", uri = "file:enc-a/" },
  { type = "encrypted", path = "/database", uri = "file:enc-ab/" },
  { path = "/data/plain", uri = "file:enc-a/plain" },
  { path = "/more", uri = "file:enc-a/" },
]
""")
    assert [s.type for s in m.mounts] == ["encrypted", "encrypted", "chroot", "chroot"]


def test_keys_missing_is_recorded_not_an_error(tmp_path):
    m = load_text(tmp_path, """
fs.insecure__keys.have = "00112233445566778899AABBCCDDEEFF"
fs.mounts = [
  { type = "encrypted", path = "/a", uri = "file:a/" },
  { type = "encrypted", path = "/b", uri = "file:b/", key_name = "have" },
  { type = "encrypted", path = "/c", uri = "file:c/", key_name = "provisioned", enable_recovery = true },
  { type = "encrypted", path = "/d", uri = "file:d/", key_name = "_sgx_mrenclave" },
  { type = "encrypted", path = "/e", uri = "file:e/" },
]
""")
    assert m.keys == {"have": bytes.fromhex("00112233445566778899aabbccddeeff")}
    assert m.keys_missing == ["default", "provisioned"]
    assert [s.key_name for s in m.mounts] == ["default", "have", "provisioned", "_sgx_mrenclave", "default"]
    assert [s.enable_recovery for s in m.mounts] == [False, False, True, False, False]


# --- warnings for unknown keys ----------------------------------------------------------------------


def test_unknown_keys_warn(tmp_path, caplog):
    text = """
sgx.enclave_sise = "1G"
sgx.debug = true
foo = { bar = 1 }
loader.entrypoint = "file:/x"
fs.mounts = [{ path = "/a", uri = "file:a", typo = 1 }]
sgx.trusted_files = [{ uri = "file:t", sha = "00" }]
sgx.protected_files = ["file:p"]
"""
    with caplog.at_level(logging.WARNING, logger="libos.manifest"):
        m = load_text(tmp_path, text, source="app.manifest")
    assert len(m.warnings) == 5
    for name in ("sgx.enclave_sise", "foo", "fs.mounts[0].typo", "sgx.trusted_files[0].sha",
                 "sgx.protected_files"):
        assert any(w.startswith(name + ":") for w in m.warnings), name
    assert not any("sgx.debug" in w for w in m.warnings)
    logged = [r.getMessage() for r in caplog.records if r.name == "libos.manifest"]
    assert len(logged) == 5
    assert any("app.manifest: sgx.enclave_sise" in line for line in logged)


def test_known_gramine_keys_are_silent(tmp_path):
    m = load_text(tmp_path, """
loader.insecure__use_cmdline_argv = true
loader.uid = 1000
loader.gid = 1000
loader.insecure__disable_aslr = false
loader.pal_internal_mem_size = "64M"
libos.check_invalid_pointers = false
sys.stack.size = "2M"
sys.brk.max_size = "1G"
sys.insecure__allow_eventfd = true
sys.disallow_subprocesses = true
sys.enable_extra_runtime_domain_names_conf = true
sgx.thread_num = 16
sgx.insecure__rpc_thread_num = 4
sgx.preheat_enclave = false
sgx.remote_attestation = "dcap"
sgx.ra_client_spid = ""
sgx.ra_client_linkable = false
sgx.require_avx = true
sgx.profile.enable = "main"
sgx.profile.with_stack = true
sgx.vtune_profile = false
sgx.seal_key.flags_mask = "0xffffffffffffffff"
sgx.cpu_features.avx = "required"
sgx.allowed_ioctls = [{ request_code = 0x1234, struct = "" }]
sgx.ioctl_structs.s = [{ size = 8, direction = "out" }]
sgx.isvprodid = 1
sgx.isvsvn = 2
sgx.enclave_size = "0x10000000"
""")
    assert m.warnings == []


# --- environment -------------------------------------------------------------------------------------


def test_env_forms_and_passthrough(tmp_path):
    text = """
loader.env.PLAIN = "p"
loader.env.TABLE = { value = "t" }
loader.env.HOME = { passthrough = true }
loader.env.ABSENT = { passthrough = true }
loader.env.EMPTY = ""
"""
    m = loads_manifest(text, host_env={"HOME": "/home/me", "OTHER": "o"})
    assert m.env == {"PLAIN": "p", "TABLE": "t", "HOME": "/home/me", "EMPTY": ""}


def test_env_passthrough_defaults_to_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("PFSKIT_MANIFEST_TEST", "from-host")
    m = loads_manifest("loader.env.PFSKIT_MANIFEST_TEST = { passthrough = true }")
    assert m.env == {"PFSKIT_MANIFEST_TEST": "from-host"}
    assert loads_manifest('loader.env.X = "y"').env == {"X": "y"}  # host variables are not passed by default


def test_env_insecure_use_host_env(tmp_path):
    m = loads_manifest('loader.insecure__use_host_env = true\nloader.env.A = "manifest"',
                       host_env={"A": "host", "B": "host"})
    assert m.env == {"A": "manifest", "B": "host"}


# --- URIs ---------------------------------------------------------------------------------------------


def test_relative_uris_resolve_against_the_manifest_folder(tmp_path):
    folder = tmp_path / "app"
    folder.mkdir()
    path = write(folder, """
loader.entrypoint = "file:lib/libsysdb.so"
fs.root = { uri = "file:." }
fs.mounts = [
  { path = "/a", uri = "file:data" },
  { path = "/b/./c/", uri = "file:./x/../y/" },
  { path = "/abs", uri = "file:/srv/abs" },
  { path = "//up", uri = "file:../up" },
]
sgx.trusted_files = ["file:bin/app", { uri = "file:conf/" }]
sgx.allowed_files = ["file:logs/", "file:/tmp/x"]
""")
    m = load_manifest(path, host_env={})
    assert m.loader_entrypoint == str(folder / "lib" / "libsysdb.so")
    assert m.root == MountSpec(type="chroot", path="/", uri=str(folder))
    assert [(s.path, s.uri) for s in m.mounts] == [
        ("/a", str(folder / "data")),
        ("/b/c", str(folder / "y") + "/"),
        ("/abs", "/srv/abs"),
        ("/up", str(tmp_path / "up")),
    ]
    assert [t.path for t in m.trusted_files] == [str(folder / "bin" / "app"), str(folder / "conf") + "/"]
    assert m.allowed_files == [str(folder / "logs") + "/", "/tmp/x"]


def test_loads_resolves_against_cwd_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = loads_manifest('fs.mounts = [{ path = "/a", uri = "file:data/" }]')
    assert m.mounts[0].uri == os.path.join(str(tmp_path), "data") + "/"
    m = loads_manifest('fs.mounts = [{ path = "/a", uri = "file:data" }]', base_dir=tmp_path / "sub")
    assert m.mounts[0].uri == str(tmp_path / "sub" / "data")


def test_root_defaults(tmp_path):
    m = load_text(tmp_path, 'fs.root = { type = "tmpfs", uri = "file:ignored" }')
    assert m.root == MountSpec(type="tmpfs", path="/", uri=None)
    m = load_text(tmp_path, 'fs.root.uri = "file:rootfs/"\nfs.root.path = "/"\nfs.start_dir = "/srv//app/"')
    assert m.root == MountSpec(type="chroot", path="/", uri=str(tmp_path / "rootfs") + "/")
    assert m.start_dir == "/srv/app"


def test_trusted_files_both_forms(tmp_path):
    digest = hashlib.sha256(b"app").hexdigest().upper()
    m = load_text(tmp_path, f"""
sgx.trusted_files = [
  "file:/usr/bin/app",
  {{ uri = "file:/usr/lib/" }},
  {{ uri = "file:app.py", sha256 = "{digest}" }},
]
sgx.file_check_policy = "allow_all_but_log"
""")
    assert m.trusted_files == [
        TrustedFile(path="/usr/bin/app", sha256=None, uri="file:/usr/bin/app"),
        TrustedFile(path="/usr/lib/", sha256=None, uri="file:/usr/lib/"),
        TrustedFile(path=str(tmp_path / "app.py"), sha256=hashlib.sha256(b"app").digest(), uri="file:app.py"),
    ]
    assert [t.is_dir for t in m.trusted_files] == [False, True, False]
    assert m.file_check_policy == "allow_all_but_log"


def test_trusted_files_array_of_tables_syntax(tmp_path):
    m = load_text(tmp_path, '[[sgx.trusted_files]]\nuri = "file:/a"\n\n[[sgx.trusted_files]]\nuri = "file:/b"\n')
    assert [t.path for t in m.trusted_files] == ["/a", "/b"]


def test_loader_entrypoint_table_form(tmp_path):
    m = load_text(tmp_path, f'loader.entrypoint.uri = "file:{GRAMINE}/libsysdb.so"\n'
                            f'loader.entrypoint.sha256 = "{"0" * 64}"')
    assert m.loader_entrypoint == f"{GRAMINE}/libsysdb.so"
    err = error_for(tmp_path, 'loader.entrypoint.sha256 = "00"')
    assert err.key == "loader.entrypoint.uri"


# --- extensions and legacy syntax ---------------------------------------------------------------------


def test_readonly_chroot_extension(tmp_path):
    m = load_text(tmp_path, 'fs.mounts = [{ path = "/ro", uri = "file:ro", readonly = true }, '
                            '{ path = "/rw", uri = "file:rw" }]')
    assert [s.readonly for s in m.mounts] == [True, False]
    assert m.warnings == []


def test_legacy_table_forms(tmp_path):
    m = load_text(tmp_path, """
argv0_unused = 1
[fs.mount.lib]
type = "chroot"
path = "/lib"
uri = "file:/usr/lib"

[sgx.trusted_files]
libc = "file:/usr/lib/libc.so.6"

[sgx.allowed_files]
hosts = "file:/etc/hosts"
""")
    assert m.mounts == [MountSpec(type="chroot", path="/lib", uri="/usr/lib")]
    assert [t.path for t in m.trusted_files] == ["/usr/lib/libc.so.6"]
    assert m.allowed_files == ["/etc/hosts"]
    assert sum("deprecated" in w for w in m.warnings) == 3
    assert any(w.startswith("argv0_unused:") for w in m.warnings)


def test_legacy_mount_errors_name_the_mount(tmp_path):
    err = error_for(tmp_path, '[fs.mount.lib]\npath = "lib"\nuri = "file:/usr/lib"\n')
    assert err.key == "fs.mount.lib.path"


@pytest.mark.parametrize("key", ["loader.log_level", "fs.start_dir", "sgx.file_check_policy"])
def test_empty_strings_are_not_defaults(tmp_path, key):
    assert error_for(tmp_path, f'{key} = ""').key == key


@pytest.mark.parametrize("written", ["m.toml", "./m.toml", "sub/../m.toml", ".//sub/./m2.toml"])
def test_manifest_source_and_folder_as_pathlib_writes_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           written: str) -> None:
    """A manifest's ``source`` is its path as pathlib writes it (``.`` and empty parts dropped,
    ``..`` kept), and relative ``file:`` URIs resolve against its folder."""
    (tmp_path / "sub").mkdir()
    for name in ("m.toml", "sub/m2.toml"):
        (tmp_path / name).write_text('libos.entrypoint = "/bin/true"\n'
                                     'fs.mounts = [{ path = "/d", uri = "file:data" }]\n')
    monkeypatch.chdir(tmp_path)
    m = load_manifest(written)
    assert m.source == str(Path(written))
    assert m.mounts[0].uri == str((tmp_path / Path(written).parent / "data").resolve())
