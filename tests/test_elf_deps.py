"""libos.elf_deps: the shared-library closure equals what the real ld.so loads (``ldd``, and
programs run for real), for the host's programs and for programs built here with DT_RPATH,
DT_RUNPATH and $ORIGIN; ld.so.cache is read as ldconfig writes it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import require

from libos import elf_deps
from libos.elf_deps import ElfDepsError, LdCache
from libos.templating import parse_ldd

require(shutil.which("ldd"), "ldd (libc-bin) is needed to compare against")

HOST_PROGRAMS = ["/usr/bin/python3", "/usr/bin/sqlite3"]
OPTIONAL_PROGRAMS = ["/bin/ls", "/bin/bash", "/usr/bin/ssh", "/usr/bin/git", "/usr/bin/curl", "/usr/bin/openssl",
                     "/usr/bin/gpg", "/usr/bin/perl", "/usr/bin/java"]


def ldd(path: str | Path) -> list[str]:
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout
    assert "not found" not in out, out
    return parse_ldd(out)


@pytest.mark.parametrize("program", HOST_PROGRAMS)
def test_host_programs_match_ldd(program: str) -> None:
    require(os.path.exists(program), f"{program} is needed")
    assert elf_deps.closure(program) == ldd(program)


def test_other_installed_programs_match_ldd() -> None:
    """Whichever of these are installed (java: a DT_RPATH of $ORIGIN/../lib, reached through
    /usr/bin/java -> /etc/alternatives/java -> the JDK; ldd takes $ORIGIN from the name it is
    given, an exec'd program from its real file, so ldd is given the real file)."""
    for program in filter(os.path.exists, OPTIONAL_PROGRAMS):
        assert elf_deps.closure(program) == ldd(os.path.realpath(program)), program


def test_system_ld_so_cache_parsed_as_ldconfig_lists_it() -> None:
    require(os.path.exists("/etc/ld.so.cache") and shutil.which("ldconfig"), "/etc/ld.so.cache and ldconfig")
    cache = LdCache.load("/etc/ld.so.cache")
    listed = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout.splitlines()[1:]
    pairs = [(m.group(1), m.group(2)) for line in listed if (m := re.match(r"\s+(\S+) \(.*\) => (\S+)$", line))]
    assert pairs and [(e.name, e.path) for e in cache.entries] == pairs
    assert cache.lookup("libc.so.6", "EM_X86_64", 64) in ldd("/usr/bin/python3")


# ------------------------------------------------------------------ programs built here

@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(shutil.which("gcc"), "gcc is needed to build the test programs")
    top = tmp_path_factory.mktemp("elfdeps")
    (top / "lib").mkdir()
    (top / "bin").mkdir()
    (top / "bad").mkdir()
    src = top / "src"
    src.mkdir()
    (src / "bar.c").write_text("int bar(void) { return 41; }\n")
    (src / "foo.c").write_text("int bar(void);\nint foo(void) { return bar() + 1; }\n")
    (src / "main.c").write_text('#include <stdio.h>\nint foo(void);\nint main(void) { printf("%d\\n", foo()); }\n')

    def gcc(*args: str) -> None:
        subprocess.run(["gcc", *args], check=True, cwd=top, capture_output=True)

    gcc("-shared", "-fPIC", "-o", "lib/libbar.so", "src/bar.c", "-Wl,-soname,libbar.so")
    gcc("-shared", "-fPIC", "-o", "lib/libfoo.so", "src/foo.c", "-Llib", "-lbar", "-Wl,-soname,libfoo.so")
    # earlier in the search paths: ELF files of another class and another machine, which ld.so
    # passes over, and a file that is no ELF file, which stops ld.so
    good = (top / "lib" / "libfoo.so").read_bytes()
    (top / "bad" / "libfoo.so").write_bytes(good[:4] + b"\x01" + good[5:])  # ELFCLASS32
    (top / "bad2").mkdir()
    (top / "bad2" / "libfoo.so").write_bytes(good[:18] + (183).to_bytes(2, "little") + good[20:])  # EM_AARCH64
    (top / "junk").mkdir()
    (top / "junk" / "libfoo.so").write_text("not an ELF file\n")
    for name, dtags in (("rpath", "--disable-new-dtags"), ("runpath", "--enable-new-dtags")):
        gcc("-o", f"bin/prog_{name}", "src/main.c", "-Llib", "-lfoo",
            f"-Wl,{dtags},-rpath,$ORIGIN/../bad:$ORIGIN/../bad2:$ORIGIN/../lib")
    gcc("-o", "bin/prog_junk", "src/main.c", "-Llib", "-lfoo", "-Wl,-rpath-link,lib",
        "-Wl,-rpath,$ORIGIN/../junk:$ORIGIN/../lib")
    gcc("-o", "bin/prog_plain", "src/main.c", "-Llib", "-lfoo", "-Wl,-rpath-link,lib")
    (top / "other").mkdir()
    os.symlink(top / "bin" / "prog_rpath", top / "other" / "linked")
    return top


def run(program: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(program)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})


def test_rpath_inherited_by_dependencies(built: Path) -> None:
    prog = built / "bin" / "prog_rpath"
    assert run(prog).stdout == "42\n"  # the real loader: libbar found through the program's DT_RPATH
    got = elf_deps.closure(prog)
    assert got == ldd(prog)
    assert f"{built}/bin/../lib/libfoo.so" in got and f"{built}/bin/../lib/libbar.so" in got


def test_runpath_not_inherited(built: Path) -> None:
    prog = built / "bin" / "prog_runpath"
    assert "libbar.so: cannot open shared object file" in run(prog).stderr
    assert "libbar.so => not found" in subprocess.run(["ldd", str(prog)], capture_output=True, text=True).stdout
    with pytest.raises(ElfDepsError, match=rf"libbar\.so \(needed by {built}/bin/\.\./lib/libfoo\.so\) not found"):
        elf_deps.closure(prog)


def test_origin_is_the_real_folder_of_the_program(built: Path) -> None:
    link = built / "other" / "linked"
    assert run(link).stdout == "42\n"  # exec'd through the link, $ORIGIN is bin/
    assert elf_deps.closure(link) == elf_deps.closure(built / "bin" / "prog_rpath")


def test_a_non_elf_candidate_stops_the_search(built: Path) -> None:
    prog = built / "bin" / "prog_junk"
    assert "libfoo.so: file too short" in run(prog).stderr
    with pytest.raises(ElfDepsError, match=r"junk/libfoo\.so: not a valid ELF file"):
        elf_deps.closure(prog)


def test_not_found_and_not_elf(built: Path) -> None:
    with pytest.raises(ElfDepsError, match=r"libfoo\.so \(needed by .*prog_plain\) not found"):
        elf_deps.closure(built / "bin" / "prog_plain")
    with pytest.raises(ElfDepsError, match="not a valid ELF file"):
        elf_deps.closure(built / "src" / "main.c")


def test_custom_ld_so_cache_as_ldconfig_writes_it(built: Path, tmp_path: Path) -> None:
    require(shutil.which("ldconfig"), "ldconfig is needed")
    conf = tmp_path / "ld.so.conf"
    conf.write_text(f"{built}/lib\n")
    cache_file = tmp_path / "ld.so.cache"
    subprocess.run(["ldconfig", "-X", "-f", str(conf), "-C", str(cache_file)], check=True, capture_output=True)
    cache = LdCache.load(cache_file)
    listed = subprocess.run(["ldconfig", "-p", "-C", str(cache_file)], capture_output=True, text=True,
                            check=True).stdout
    assert f"libfoo.so (libc6,x86-64) => {built}/lib/libfoo.so" in listed
    assert cache.lookup("libfoo.so", "EM_X86_64", 64) == f"{built}/lib/libfoo.so"
    assert cache.lookup("libfoo.so", "EM_AARCH64", 64) is None
    got = elf_deps.closure(built / "bin" / "prog_plain", cache=cache)
    assert f"{built}/lib/libfoo.so" in got and f"{built}/lib/libbar.so" in got


def test_cache_format_errors() -> None:
    with pytest.raises(ValueError, match=r"glibc-ld\.so\.cache1\.1"):
        LdCache.parse(b"garbage" * 10)
    assert LdCache.load("/nonexistent-i10-cache").entries == []


def test_chroot_default_folders(built: Path, tmp_path: Path) -> None:
    """Inside a chroot with no ld.so.cache: the default folders, and only files of the chroot."""
    require(os.path.exists("/usr/bin/sqlite3"), "/usr/bin/sqlite3 is needed")
    root = tmp_path / "root"
    host = elf_deps.closure("/usr/bin/sqlite3")
    for path in ["/usr/bin/sqlite3", *host]:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    multiarch = Path(host[0]).parent.name if "linux-gnu" in host[0] else "x86_64-linux-gnu"
    libdir = root / "usr" / "lib" / multiarch
    libdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built / "lib" / "libfoo.so", libdir / "libfoo.so")
    shutil.copyfile(built / "lib" / "libbar.so", libdir / "libbar.so")
    shutil.copyfile(built / "bin" / "prog_plain", root / "usr" / "bin" / "prog_plain")
    assert not (root / "etc" / "ld.so.cache").exists()
    assert elf_deps.closure("/usr/bin/sqlite3", root=root) == host
    got = elf_deps.closure("/usr/bin/prog_plain", root=root)
    assert f"/usr/lib/{multiarch}/libfoo.so" in got and f"/usr/lib/{multiarch}/libbar.so" in got


def test_entry_point_taken_through_the_mounts() -> None:
    from libos.trusted_deps import host_path

    data = {"fs": {"mounts": [{"path": "/usr", "uri": "file:/usr"}, {"path": "/usr/bin", "uri": "file:bin/"},
                              {"type": "tmpfs", "path": "/usr/bin/tmp"}, {"path": "/app", "uri": "file:/srv/app"}]}}
    assert host_path(data, "/usr/bin/python3") == "bin/python3"  # the longest chroot mount, relative kept
    assert host_path(data, "/usr/lib/x") == "/usr/lib/x"
    assert host_path(data, "/usr/bin/tmp/x") == "bin/tmp/x"  # a tmpfs is no host folder: the chroot mount above it
    assert host_path(data, "/app") == "/srv/app"
    assert host_path(data, "/opt/x") == "opt/x"  # fs.root's default is file:.
    data["fs"]["root"] = {"uri": "file:/rootfs"}
    assert host_path(data, "/opt/x") == "/rootfs/opt/x"
