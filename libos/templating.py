"""Manifest templates: Gramine's jinja2 environment (``gen_jinja_env.py``) and its globals.

``jinja2.Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)``
with no custom filters, and the globals Gramine's ``gramine-manifest`` offers:

- ``gramine.libos``, ``gramine.pkglibdir``, ``gramine.runtimedir(libc="glibc")`` (see
  :mod:`libos.gramine_install` for where they point without a Gramine install), plus Gramine's
  ``_graminelibos_offsets`` constants when that module is importable (SGX Gramine installed);
- ``python.stdlib``, ``platstdlib``, ``purelib``, ``distlib``, ``get_config_var``, ``ext_suffix``,
  ``get_path``, ``get_paths``, ``implementation``, ``get_sys_path(interpreter,
  include_nonexisting=False)``: of the Python running pfskit (as Gramine's, of the Python running
  ``gramine-manifest``), except ``get_sys_path``, which runs the interpreter it is given;
- ``env`` (``os.environ``) and ``ldd(*binaries)`` (sorted absolute paths from running ``ldd``).

Variables come from ``-D NAME=VALUE`` (a string; ``-D NAME`` alone is ``True``). A syntax error or
an undefined variable raises :class:`TemplateError` naming the template file and line.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .errors import SgxManifestError

__all__ = ["Runtimedir", "TemplateError", "ldd", "make_env", "parse_defines", "parse_ldd", "python_get_sys_path",
           "render", "render_manifest"]


class TemplateError(SgxManifestError):
    """A manifest template can't be rendered; the message starts with ``FILE:LINE:``."""


class Runtimedir:
    """``gramine.runtimedir``: callable (``runtimedir(libc='glibc')``), ``str()``-able and ``/``-able."""

    @staticmethod
    def __call__(libc: str = "glibc") -> pathlib.Path:
        from . import gramine_install

        return gramine_install.runtimedir(libc)

    def __str__(self) -> str:
        return str(self())

    def __truediv__(self, other: str) -> pathlib.Path:
        return self() / other


def parse_ldd(output: str) -> list[str]:
    """The absolute paths in ``ldd`` output (vdso and other lines without a file left out), sorted."""
    found = set()
    for raw in output.splitlines():
        fields = raw.split()
        if len(fields) < 2:
            continue
        if fields[1] == "=>" and len(fields) > 2 and fields[2].startswith("/"):
            found.add(fields[2])
        elif fields[0].startswith("/") and fields[1].startswith("("):
            found.add(fields[0])
    return sorted(found)


def ldd(*binaries: str | os.PathLike[str]) -> list[str]:
    """``ldd`` of ``binaries``: the sorted absolute paths of their shared libraries (Gramine's ``ldd``)."""
    try:
        out = subprocess.run(["ldd", *(os.fspath(b) for b in binaries)], check=True, capture_output=True)
    except FileNotFoundError:
        raise TemplateError("ldd(): the ldd program is not installed (it comes with libc-bin)") from None
    except subprocess.CalledProcessError as exc:
        detail = " ".join(exc.stderr.decode(errors="replace").split()) or f"exit status {exc.returncode}"
        raise TemplateError(f"ldd({', '.join(map(str, binaries))}) failed: {detail}") from None
    return parse_ldd(out.stdout.decode("ascii", errors="replace"))


def python_get_sys_path(interpreter: str | os.PathLike[str],
                        include_nonexisting: bool = False) -> Iterator[pathlib.Path]:
    """The ``sys.path`` entries of ``interpreter`` (run for it), existing ones only unless asked."""
    out = subprocess.run([os.fspath(interpreter), "-c",
                          "import sys; print('\\0'.join(p for p in sys.path if p), end='')"],
                         check=True, capture_output=True).stdout
    for raw in out.split(b"\0"):
        path = pathlib.Path(os.fsdecode(raw))
        if include_nonexisting or path.exists():
            yield path


def _python_globals() -> dict[str, Any]:
    paths = sysconfig.get_paths()
    return {
        "stdlib": pathlib.Path(paths["stdlib"]),
        "platstdlib": pathlib.Path(paths["platstdlib"]),
        "purelib": pathlib.Path(paths["purelib"]),
        "distlib": pathlib.Path(sysconfig.get_path("stdlib", vars={"py_version_short": sys.version_info[0]}))
        / "dist-packages",
        "get_config_var": sysconfig.get_config_var,
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "get_path": sysconfig.get_path,
        "get_paths": sysconfig.get_paths,
        "implementation": sys.implementation,
        "get_sys_path": python_get_sys_path,
    }


def _gramine_globals() -> dict[str, Any]:
    from . import gramine_install

    found: dict[str, Any] = {
        "libos": gramine_install.libos_path(),
        "pkglibdir": gramine_install.pkglibdir(),
        "runtimedir": Runtimedir(),
    }
    try:
        import _graminelibos_offsets as offsets  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        found.update((k, v) for k, v in vars(offsets).items() if not k.startswith("_"))
    return found


def make_env() -> Any:
    """A jinja2 environment as Gramine's ``make_env()``: strict undefined, no autoescape, its globals."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.globals["gramine"] = _gramine_globals()
    env.globals["python"] = _python_globals()
    env.globals["env"] = os.environ
    env.globals["ldd"] = ldd
    return env


def parse_defines(values: Sequence[str]) -> dict[str, str | bool]:
    """``-D`` values: ``NAME=VALUE`` gives a string, ``NAME`` alone ``True`` (later ones win)."""
    found: dict[str, str | bool] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        found[name] = rest if sep else True
    return found


def _template_line(tb: Any, filename: str) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render(text: str, variables: Mapping[str, Any] | None = None, *, source: str = "<string>") -> str:
    """Render template ``text`` (named ``source`` in errors) with Gramine's globals and ``variables``."""
    import jinja2

    env = make_env()
    try:
        template = env.template_class.from_code(env, env.compile(text, filename=source), env.make_globals(None))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{source}:{exc.lineno}: template syntax error: {exc.message}") from None
    try:
        return template.render(**dict(variables or {}))
    except TemplateError as exc:
        line = _template_line(exc.__traceback__, source)
        raise TemplateError(f"{source}:{line}: {exc}" if line else f"{source}: {exc}", errno=exc.errno) from None
    except jinja2.UndefinedError as exc:
        line = _template_line(exc.__traceback__, source)
        hint = ""
        if exc.message and exc.message.endswith(" is undefined") and exc.message.startswith("'"):
            hint = f" (define it with -D {exc.message.split(chr(39))[1]}=VALUE)"
        raise TemplateError(f"{source}:{line or '?'}: {exc.message}{hint}") from None
    except Exception as exc:  # an error raised by the template's own code (a call, a filter)
        line = _template_line(exc.__traceback__, source)
        raise TemplateError(f"{source}:{line or '?'}: {type(exc).__name__}: {exc}") from None


def render_manifest(text: str, variables: Mapping[str, Any] | None = None, *, source: str = "<string>",
                    chroot: pathlib.Path | None = None, check: bool = True, trusted_deps: bool = False,
                    jobs: int | None = None) -> str:
    """What ``gramine-manifest`` writes for template ``text``: rendered, parsed, Manifest()'s
    defaults, checked (unless ``check`` is false), with the entry point's library closure added
    (``trusted_deps``), trusted files expanded and hashed, as TOML text."""
    from . import sgx_manifest

    data = sgx_manifest.loads(render(text, variables, source=source), source=f"{source} (rendered)")
    sgx_manifest.apply_defaults(data)
    if check:
        sgx_manifest.check(data)
    if trusted_deps:
        from .trusted_deps import add_trusted_deps

        add_trusted_deps(data, chroot=chroot)
    sgx_manifest.expand_trusted_files(data, chroot=chroot, jobs=jobs)
    return sgx_manifest.dumps(data)
