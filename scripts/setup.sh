#!/usr/bin/env bash
# Set up pfskit on a fresh machine: system packages (when root), a venv in .venv, the package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    need=()
    command -v openssl >/dev/null || need+=(openssl)
    command -v fusermount3 >/dev/null || need+=(fuse3)
    [ -e /usr/lib/x86_64-linux-gnu/libfuse3.so.3 ] || [ -e /usr/lib/aarch64-linux-gnu/libfuse3.so.3 ] \
        || need+=(libfuse3-3)
    # real programs the FUSE and libos run tests run (make, gcc: tests/test_run_programs.py), gocryptfs
    # for the FUSE benchmark, proot for the libos run benchmark
    for tool in sqlite3 rsync git tar gocryptfs make gcc proot; do command -v "$tool" >/dev/null || need+=("$tool"); done
    # bench/bench_run.py's namespace peer
    command -v bwrap >/dev/null || need+=(bubblewrap)
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi
# libos run as an unprivileged user needs user namespaces and a FUSE device it may open: say so
if [ -r /proc/sys/kernel/unprivileged_userns_clone ] && [ "$(cat /proc/sys/kernel/unprivileged_userns_clone)" = 0 ]; then
    echo "setup: note: unprivileged user namespaces are off (sysctl kernel.unprivileged_userns_clone=1);" \
         "libos run works as root only" >&2
fi
if [ -e /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
    echo "setup: note: /dev/fuse is mode $(stat -c %a /dev/fuse): other users can't run libos run" \
         "(see docs/run.md: LIBOS_FUSE_DEVICE)" >&2
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
log=.venv/pip-install.log
# the data extra (fsspec, pandas, pyarrow, Dask) is what tests/test_fsspec*.py and bench/bench_data.py use;
# compat mode: a plain .pth path entry; the default import-hook finder adds ~10 ms to every start
if ! .venv/bin/python -m pip install -q -e '.[test,data]' --config-settings editable_mode=compat >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install failed (log above)" >&2
    exit 1
fi
# byte-compile our packages once: with PYTHONDONTWRITEBYTECODE set, every run would recompile them
.venv/bin/python -m compileall -q pfs pal vfs libos tools >/dev/null
touch .venv/.installed
echo "setup: ok (.venv ready; commands: .venv/bin/pfs, .venv/bin/pfs-encrypt)"
