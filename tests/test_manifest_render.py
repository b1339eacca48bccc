"""libos.templating and `libos manifest`: Gramine's templates render to gramine-manifest's bytes
(vectors made by Gramine), Gramine's globals work, errors name the template file and line, the
output is written whole or not at all."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from helpers import require

from libos import gramine_install, templating
from libos.templating import TemplateError

VEC = Path(__file__).parent / "vectors" / "gramine-sign"
ROOT = VEC / "root"
LIBOS = str(Path(sys.executable).parent / "libos")


def libos(*args: str | os.PathLike[str], cwd: Path | None = None, env: dict | None = None,
          input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LIBOS, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, input=input)


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("libos: error: "), proc.stderr
    return lines[0]


# ------------------------------------------------------------------ Gramine's vectors

@pytest.mark.parametrize("case", ["case1", "case2"])
def test_case_templates_render_to_gramine_manifest_bytes(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEC_MODE", "vector")
    template = VEC / f"{case}.manifest.template"
    out = templating.render_manifest(template.read_text(), {"log_level": "error"}, source=str(template),
                                     chroot=ROOT)
    assert out.encode() == (VEC / f"{case}.manifest").read_bytes()


@pytest.mark.parametrize("case", ["case1", "case2"])
def test_command_writes_gramine_manifest_bytes(case: str, tmp_path: Path) -> None:
    out = tmp_path / f"{case}.manifest"
    proc = libos("manifest", "--chroot", ROOT, "-Dlog_level=error", VEC / f"{case}.manifest.template", out,
                 env={"VEC_MODE": "vector"})
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (VEC / f"{case}.manifest").read_bytes()
    # and to standard output, the template from standard input
    proc = libos("manifest", "--chroot", ROOT, "-D", "log_level=error", "-", env={"VEC_MODE": "vector"},
                 input=(VEC / f"{case}.manifest.template").read_text())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (VEC / f"{case}.manifest").read_text()


# ------------------------------------------------------------------ globals

def test_gramine_globals() -> None:
    text = templating.render('{{ gramine.libos }}|{{ gramine.pkglibdir }}|{{ gramine.runtimedir() }}|'
                             '{{ gramine.runtimedir }}|{{ gramine.runtimedir / "libc.so.6" }}|'
                             '{{ gramine.runtimedir("glibc") }}')
    libos_path, pkglib, rt_call, rt_str, rt_div, rt_glibc = text.split("|")
    assert libos_path == str(gramine_install.libos_path()) and Path(libos_path).is_file()
    assert pkglib == str(gramine_install.pkglibdir())
    assert rt_call == rt_str == rt_glibc == str(gramine_install.runtimedir())
    assert rt_div == str(gramine_install.runtimedir() / "libc.so.6")
    assert (Path(rt_call) / "libc.so.6").exists()  # without Gramine: the host's libc folder


def test_python_env_and_ldd_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I10_TEMPLATE_VAR", "from-env")
    text = templating.render(
        "{{ python.stdlib }}|{{ python.platstdlib }}|{{ python.purelib }}|{{ python.distlib }}|"
        "{{ python.ext_suffix }}|{{ python.get_config_var('VERSION') }}|{{ python.get_path('stdlib') }}|"
        "{{ python.get_paths()['purelib'] }}|{{ python.implementation.name }}|{{ env.I10_TEMPLATE_VAR }}|"
        "{{ env.get('I10_NOT_SET', 'dflt') }}|{{ ldd('/usr/bin/python3') | join(',') }}")
    parts = text.split("|")
    paths = sysconfig.get_paths()
    assert parts[:3] == [paths["stdlib"], paths["platstdlib"], paths["purelib"]]
    assert parts[3].endswith(f"python{sys.version_info[0]}/dist-packages")
    assert parts[4] == sysconfig.get_config_var("EXT_SUFFIX")
    assert parts[5] == sysconfig.get_config_var("VERSION")
    assert parts[6:9] == [paths["stdlib"], paths["purelib"], sys.implementation.name]
    assert parts[9:11] == ["from-env", "dflt"]
    real = subprocess.run(["ldd", "/usr/bin/python3"], capture_output=True, text=True, check=True).stdout
    assert parts[11].split(",") == templating.parse_ldd(real)
    assert all(p.startswith("/") and "vdso" not in p for p in parts[11].split(","))


def test_get_sys_path_runs_the_interpreter() -> None:
    got = templating.render("{% for p in python.get_sys_path('/usr/bin/python3') %}{{ p }};{% endfor %}")
    code = "import sys, os; print(';'.join(p for p in sys.path if p and os.path.exists(p)), end='')"
    want = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, check=True).stdout
    assert got == want + ";"


def test_defines() -> None:
    assert templating.parse_defines(["a=1", "b", "c=x=y", "a=2", "e="]) == {"a": "2", "b": True, "c": "x=y", "e": ""}
    assert templating.render("{{ b }} {{ 'yes' if b else 'no' }}", {"b": True}) == "True yes"


# A template in the style of Gramine's CI-Examples/python (written here, not copied): python.*,
# -Darch_libdir, gramine.runtimedir(), get_sys_path loops, env-driven values, trusted folders.
PYTHON_TEMPLATE = """\
# a Python application, CI-Examples style
libos.entrypoint = "{{ entrypoint }}"
loader.log_level = "{{ log_level }}"
loader.env.LD_LIBRARY_PATH = "/lib:{{ arch_libdir }}:/usr/{{ arch_libdir }}"
loader.insecure__use_cmdline_argv = true
sys.enable_sigterm_injection = true
fs.mounts = [
  { path = "/lib", uri = "file:{{ gramine.runtimedir() }}" },
  { path = "{{ arch_libdir }}", uri = "file:{{ arch_libdir }}" },
{% for path in python.get_sys_path(entrypoint) %}
  { path = "{{ path }}", uri = "file:{{ path }}" },
{% endfor %}
  { path = "{{ entrypoint }}", uri = "file:{{ entrypoint }}" },
  { type = "tmpfs", path = "/tmp" },
]
sgx.debug = true
sgx.edmm_enable = {{ 'true' if env.get('EDMM', '0') == '1' else 'false' }}
sgx.enclave_size = "1G"
sgx.max_threads = {{ '1' if env.get('EDMM', '0') == '1' else '32' }}
sgx.remote_attestation = "{{ ra_type }}"
sgx.trusted_files = [
  "file:{{ entrypoint }}",
  "file:{{ python.stdlib }}/json/",
  "file:{{ python.stdlib }}/os.py",
  "file:{{ gramine.runtimedir() }}/libc.so.6",
]
"""


def test_python_style_template_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDMM", "0")
    entry = os.path.realpath("/usr/bin/python3")
    out = templating.render_manifest(PYTHON_TEMPLATE, {"entrypoint": entry, "log_level": "error",
                                                       "arch_libdir": f"/lib/{sysconfig.get_config_var('MULTIARCH')}",
                                                       "ra_type": "dcap"}, source="python.manifest.template")
    data = tomllib.loads(out)
    assert data["libos"]["entrypoint"] == entry and data["sgx"]["max_threads"] == 32
    uris = [t["uri"] for t in data["sgx"]["trusted_files"]]
    stdlib = sysconfig.get_paths()["stdlib"]
    assert uris[0] == f"file:{entry}" and f"file:{stdlib}/json/decoder.py" in uris and f"file:{stdlib}/os.py" in uris
    assert not any(u.endswith("/") for u in uris)
    code = "import sys, os; print(next(p for p in sys.path if p.endswith('/lib-dynload')))"
    dynload = subprocess.run([entry, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert {"path": dynload, "uri": f"file:{dynload}"} in data["fs"]["mounts"]  # the entry point's sys.path
    assert data["loader"]["entrypoint"]["uri"] == f"file:{gramine_install.libos_path()}"


# ------------------------------------------------------------------ errors name file and line

def test_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    template = tmp_path / "app.manifest.template"
    template.write_text('libos.entrypoint = "/x"\n\nloader.log_level = "{{ log_level }}"\n')
    with pytest.raises(TemplateError, match=rf"^{template}:3: 'log_level' is undefined \(define it with -D"):
        templating.render(template.read_text(), source=str(template))
    proc = libos("manifest", template)
    assert f"{template}:3: 'log_level' is undefined" in one_line_error(proc, 1)


def test_undefined_attribute_and_syntax_error_lines() -> None:
    with pytest.raises(TemplateError, match=r"^t:2: .*has no attribute 'nope'"):
        templating.render("a = 1\n{{ gramine.nope }}\n", source="t")
    with pytest.raises(TemplateError, match=r"^t:4: template syntax error"):
        templating.render("a\nb\nc\n{% if %}\n", source="t")
    with pytest.raises(TemplateError, match=r"^t:2: template syntax error: .*'endfor'"):
        templating.render("x\n{% for a in [1] %}\n", source="t")


def test_error_raised_in_template_code_names_line() -> None:
    with pytest.raises(TemplateError, match=r"^t:2: ldd\(/nonexistent-i10\) failed"):
        templating.render("a\n{{ ldd('/nonexistent-i10') }}\n", source="t")


def test_toml_error_after_rendering_names_template() -> None:
    with pytest.raises(TemplateError.__mro__[1], match=r"^t \(rendered\): not valid TOML: .*line 2"):
        templating.render_manifest("a = 1\nb = = {{ 2 }}\n", source="t")


# ------------------------------------------------------------------ the command

def test_usage_errors(tmp_path: Path) -> None:
    assert "exactly one of INFILE and -c" in one_line_error(libos("manifest"), 2)
    template = VEC / "case2.manifest.template"
    assert "exactly one of INFILE and -c" in one_line_error(libos("manifest", "-c", "a = 1", template), 2)
    assert "does not exist" in one_line_error(libos("manifest", tmp_path / "nope"), 2)
    assert "is not a folder" in one_line_error(libos("manifest", "--chroot", tmp_path / "nope", template), 2)


def test_check_and_no_check(tmp_path: Path) -> None:
    text = 'libos.entrypoint = "/x"\nfs.mounts = []\nsgx.bogus = 1\n'
    msg = one_line_error(libos("manifest", "-c", text), 1)
    assert "sgx.bogus: unknown key" in msg and "--no-check" in msg
    proc = libos("manifest", "--no-check", "-c", text)
    assert proc.returncode == 0, proc.stderr
    assert tomllib.loads(proc.stdout)["sgx"]["bogus"] == 1


def test_output_atomic_and_never_over_special_files(tmp_path: Path) -> None:
    template = tmp_path / "t.manifest.template"
    template.write_text('libos.entrypoint = "/x"\nfs.mounts = []\nsgx.trusted_files = ["file:missing"]\n')
    template.chmod(0o640)
    out = tmp_path / "out.manifest"
    out.write_text("previous\n")
    msg = one_line_error(libos("manifest", template, out, cwd=tmp_path), 1)
    assert "sgx.trusted_files[0]: 'file:missing': can't read" in msg
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.manifest", "t.manifest.template"]  # no temp left
    (tmp_path / "missing").write_bytes(b"now here")
    proc = libos("manifest", template, out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'uri = "file:missing"' in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 & ~0o022  # the template's bits, never more
    os.mkfifo(tmp_path / "fifo")
    assert "is a FIFO" in one_line_error(libos("manifest", template, tmp_path / "fifo", cwd=tmp_path), 2)
    os.symlink(out, tmp_path / "link")
    assert "is a symbolic link" in one_line_error(libos("manifest", template, tmp_path / "link", cwd=tmp_path), 2)
    assert "is a folder" in one_line_error(libos("manifest", template, tmp_path, cwd=tmp_path), 2)


def test_trusted_deps_adds_entrypoint_closure(tmp_path: Path) -> None:
    require(shutil.which("ldd"), "ldd is needed to compare against")
    text = ('libos.entrypoint = "/usr/bin/sqlite3"\n'
            'fs.mounts = [{ path = "/usr", uri = "file:/usr" }, { path = "/lib", uri = "file:/lib" }]\n'
            'sgx.trusted_files = ["file:/lib/x86_64-linux-gnu/libc.so.6"]\n')
    proc = libos("manifest", "--trusted-deps", "-c", text)
    assert proc.returncode == 0, proc.stderr
    uris = [t["uri"] for t in tomllib.loads(proc.stdout)["sgx"]["trusted_files"]]
    real = subprocess.run(["ldd", "/usr/bin/sqlite3"], capture_output=True, text=True, check=True).stdout
    named = {f"file:{p}" for p in templating.parse_ldd(real)} | {"file:/usr/bin/sqlite3"}
    assert named <= set(uris) and len(uris) == len(set(uris))  # no duplicates (libc was listed)
    assert uris[0] == "file:/lib/x86_64-linux-gnu/libc.so.6"
    # the others are the same files under the names their links lead to, and their real paths
    reals = {os.path.realpath(u[5:]) for u in named}
    assert {os.path.realpath(u[5:]) for u in uris} == reals
    assert {f"file:{r}" for r in reals} <= set(uris)
    assert "file:/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" in uris  # /lib64/ld-linux-x86-64.so.2's target
    proc = libos("manifest", "--trusted-deps", "-c", 'libos.entrypoint = "/usr/bin/sqlite3"\nfs.mounts = []\n',
                 cwd=tmp_path)  # the default fs.root is file:. (here: tmp_path), without sqlite3
    assert "/usr/bin/sqlite3 (host file usr/bin/sqlite3) does not exist" in one_line_error(proc, 1)


RUN_TEMPLATE = """\
libos.entrypoint = "/usr/bin/python3"
loader.insecure__use_cmdline_argv = true
fs.mounts = [
  { path = "/usr", uri = "file:/usr" }, { path = "/lib", uri = "file:/lib" },
  { path = "/lib64", uri = "file:/lib64" }, { path = "/etc", uri = "file:/etc" },
  { type = "tmpfs", path = "/tmp" },
]
sgx.trusted_files = [ "file:{{ stdlib }}/" ]
sgx.allowed_files = [ "file:/etc/", "file:/usr/lib/python3/", "file:/usr/local/lib/", "file:/usr/lib/locale/",
                      "file:/usr/share/zoneinfo/" ]
"""


def test_trusted_deps_manifest_runs_with_every_file_checked(tmp_path: Path) -> None:
    """Under libos run (every open checked against the hashes), python3 starts only with the
    closure --trusted-deps adds: the entry point, ld.so and libc are refused without it."""
    require(os.geteuid() == 0 and os.path.exists("/dev/fuse") and shutil.which("fusermount3"),
            "libos run needs root, /dev/fuse and fusermount3")
    code = "import sys; print(sys.version_info[0])"
    stdlib = subprocess.run(["/usr/bin/python3", "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "app.manifest.template").write_text(RUN_TEMPLATE)
    for deps in (True, False):
        out = tmp_path / f"app-{deps}.manifest"
        proc = libos("manifest", *(["--trusted-deps"] if deps else []), f"-Dstdlib={stdlib}",
                     tmp_path / "app.manifest.template", out)
        assert proc.returncode == 0, proc.stderr
        run = libos("run", out, "--", "-c", code, cwd=tmp_path)
        if deps:
            assert (run.returncode, run.stdout) == (0, "3\n"), run.stderr
        else:
            assert run.returncode != 0 and "/usr/bin/python3" in run.stderr, run.stderr
