#!/usr/bin/env bash
# pjdfstest and fsx through both front ends (`libos mount`, and inside `libos run`) on the three
# mount types (chroot, tmpfs, encrypted); prints one table. A measurement, not a test: CI doesn't
# run it (neither suite is a Debian package). Run it as root (pjdfstest changes owners and makes
# device nodes), on a machine with /dev/fuse and fusermount3.
#
#   PJDFSTEST=/tmp/pjdfstest FSX=/tmp/fsx/fsx scripts/fs-suites.sh
#
# PJDFSTEST: a built pjdfstest tree (github.com/pjd/pjdfstest: autoreconf -ifs && ./configure &&
#   make pjdfstest), with its tests/ folder. FSX: an fsx binary (xfstests' ltp/fsx.c, built with
#   gcc). Optional: FRONTS="mount run", TYPES="chroot tmpfs encrypted", TESTS="tests" (pjdfstest
#   folders or .t files relative to PJDFSTEST, e.g. "tests/mknod/11.t"), SEEDS="1 2 3",
#   FSX_OPS=20000, PROVE="prove -r" ("prove -v" shows each assertion), WORK=folder for the
#   runs' files and logs (default: a new /tmp/fs-suites.*), LIBOS=the libos command (default:
#   this checkout's .venv/bin/libos), REPORT=1 (only the table of an earlier WORK's logs).
#
# Per mount type and front end: `prove -r` of the pjdfstest files from inside the mount (files ok,
# assertions failing), then fsx with each seed, once with mmap (`fsx -N OPS -S SEED`) and once
# without (`-R -W`). Inside `libos run` the program is /bin/sh in a view of the host's /usr /lib*
# /bin /sbin /etc, the pjdfstest tree at /pjd, fsx at /fsx, a tmpfs /tmp and the mount under test
# at /m; a file check policy makes the runner serve /m (a chroot mount without checks would be a
# host bind mount: the kernel against itself). Logs: WORK/FRONT-TYPE/{pjd.out,fsx-*.out}.
set -u

: "${PJDFSTEST:?set PJDFSTEST to a built pjdfstest tree}"
: "${FSX:?set FSX to an fsx binary}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIBOS=${LIBOS:-$ROOT/.venv/bin/libos}
FRONTS=${FRONTS:-mount run}
TYPES=${TYPES:-chroot tmpfs encrypted}
TESTS=${TESTS:-tests}
SEEDS=${SEEDS:-1 2 3}
FSX_OPS=${FSX_OPS:-20000}
PROVE=${PROVE:-prove -r}
WORK=${WORK:-$(mktemp -d /tmp/fs-suites.XXXXXX)}
PJDFSTEST=$(cd "$PJDFSTEST" && pwd)
FSX=$(cd "$(dirname "$FSX")" && pwd)/$(basename "$FSX")

[ -x "$PJDFSTEST/pjdfstest" ] || { echo "fs-suites: $PJDFSTEST/pjdfstest is not built (see the header)" >&2; exit 2; }
[ -x "$FSX" ] || { echo "fs-suites: $FSX is not an executable fsx" >&2; exit 2; }
[ -x "$LIBOS" ] || { echo "fs-suites: $LIBOS not found (run scripts/setup.sh)" >&2; exit 2; }
command -v prove >/dev/null || { echo "fs-suites: prove (perl) not found" >&2; exit 2; }

# the host parts of the libos run view, as chroot mounts at the same place (symlinks resolved)
host_parts() {
    local part
    for part in /usr /lib /lib32 /lib64 /libx32 /bin /sbin /etc; do
        [ -d "$part" ] && printf '  { type = "chroot", path = "%s", uri = "file:%s" },\n' "$part" "$(realpath "$part")"
    done
}

# manifest FRONT TYPE DIR: writes DIR/m.toml (the mount under test at /m, backed by DIR/host)
manifest() {
    local front=$1 type=$2 dir=$3 under allowed
    case $type in
        tmpfs) under='{ type = "tmpfs", path = "/m" }' ;;
        chroot) under="{ type = \"chroot\", path = \"/m\", uri = \"file:$dir/host/\" }" ;;
        encrypted) under="{ type = \"encrypted\", path = \"/m\", uri = \"file:$dir/host/\", key_name = \"k\" }" ;;
    esac
    {
        echo 'libos.entrypoint = "/bin/sh"'
        echo 'loader.insecure__use_cmdline_argv = true'
        echo 'loader.env.PATH = "/usr/bin:/bin:/usr/sbin:/sbin"'
        echo 'loader.env.HOME = "/tmp"'
        echo 'loader.env.LC_ALL = "C"'
        echo 'fs.start_dir = "/m"'
        echo "fs.insecure__keys.k = \"$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')\""
        if [ "$front" = run ]; then
            allowed=$(host_parts | sed -n 's/.*uri = "file:\([^"]*\)".*/"file:\1\/",/p' | tr -d '\n')
            echo 'sgx.file_check_policy = "allow_all_but_log"'
            echo "sgx.allowed_files = [ $allowed \"file:$PJDFSTEST/\", \"file:$(dirname "$FSX")/\" ]"
        fi
        echo 'fs.mounts = ['
        if [ "$front" = run ]; then
            host_parts
            echo "  { type = \"chroot\", path = \"/pjd\", uri = \"file:$PJDFSTEST\" },"
            echo "  { type = \"chroot\", path = \"/fsx\", uri = \"file:$(dirname "$FSX")\" },"
            echo '  { type = "tmpfs", path = "/tmp" },'
        fi
        echo "  $under,"
        echo ']'
    } > "$dir/m.toml"
}

# in FRONT DIR CMD: run the shell command CMD with the mount under test as its cwd
in_view() {
    local front=$1 dir=$2 cmd=$3
    if [ "$front" = mount ]; then
        (cd "$dir/mnt/m" && sh -c "$cmd")
    else
        (cd "$dir" && "$LIBOS" run m.toml -- -c "$cmd" 2>>"$dir/run.log")
    fi
}

# row FRONT TYPE DIR: the table's line, from DIR's logs
row() {
    local front=$1 type=$2 dir=$3 files report bad_files bad_asserts failing log fsx_ok=0 fsx_runs=0 fsx_bad=""
    files=$(sed -n 's/^Files=\([0-9]*\),.*/\1/p' "$dir/pjd.out" | tail -1)
    # prove's "Test Summary Report": a "FILE.t (Wstat: W Tests: T Failed: F)" line per failing
    # file (one listed only for "TODO passed", Wstat 0 and Failed 0, passed)
    report=$(sed -n '/^Test Summary Report/,$p' "$dir/pjd.out" | grep -E '^/.*\.t +\(Wstat' \
        | grep -Ev '\(Wstat: 0 +Tests: [0-9]+ +Failed: 0\)')
    bad_files=$(grep -c . <<<"$report")
    bad_asserts=$(awk -F'Failed: ' 'NF > 1 { sub(/\).*/, "", $2); n += $2 } END { print n + 0 }' <<<"$report")
    failing=$(sed 's|.*/tests/||; s|\.t .*||' <<<"$report" | tr '\n' ' ' | sed 's/ *$//')
    for log in "$dir"/fsx-*.out; do
        [ -e "$log" ] || continue
        fsx_runs=$((fsx_runs + 1))
        if grep -q 'operations completed A-OK' "$log"; then  # fsx's last line, on success only
            fsx_ok=$((fsx_ok + 1))
        else
            fsx_bad="$fsx_bad $(basename "$log" .out | sed 's/^fsx-//')"
        fi
    done
    echo "| $front | $type | $(( ${files:-0} - bad_files ))/${files:-?} | $bad_asserts | $fsx_ok/$fsx_runs${fsx_bad:+ (failed:$fsx_bad)} | ${failing:-none} |"
}

ROWS=()
for front in $FRONTS; do
    for type in $TYPES; do
        dir=$WORK/$front-$type
        if [ -n "${REPORT:-}" ]; then  # REPORT=1: the table of an earlier run's WORK, nothing run
            [ -e "$dir/pjd.out" ] && ROWS+=("$(row "$front" "$type" "$dir")")
            continue
        fi
        rm -rf "$dir"
        mkdir -p "$dir/host" "$dir/mnt"
        chmod 755 "$dir/host"
        manifest "$front" "$type" "$dir"
        if [ "$front" = mount ]; then
            "$LIBOS" mount --allow-other --log "$dir/mount.log" "$dir/m.toml" "$dir/mnt" >/dev/null \
                || { echo "fs-suites: libos mount of $dir/m.toml failed" >&2; exit 1; }
            pjd=$PJDFSTEST fsx=$FSX
        else
            pjd=/pjd fsx=/fsx/$(basename "$FSX")
        fi
        tests=""
        for t in $TESTS; do tests="$tests $pjd/$t"; done
        echo "== $front $type: pjdfstest" >&2
        in_view "$front" "$dir" "$PROVE $tests" > "$dir/pjd.out" 2>&1
        for seed in $SEEDS; do
            for style in mmap nommap; do
                opts="-q -N $FSX_OPS -S $seed"
                [ "$style" = nommap ] && opts="$opts -R -W"
                echo "== $front $type: fsx $opts" >&2
                in_view "$front" "$dir" "$fsx $opts fsx-$style-$seed.dat" > "$dir/fsx-$style-$seed.out" 2>&1
            done
        done
        if [ "$front" = mount ]; then
            fusermount3 -u "$dir/mnt" || umount -l "$dir/mnt"
        fi
        ROWS+=("$(row "$front" "$type" "$dir")")
    done
done

echo
echo "pjdfstest $TESTS; fsx -N $FSX_OPS, seeds $SEEDS, with mmap and without (-R -W); logs in $WORK"
echo "| front end | mount | pjdfstest files ok | assertions failing | fsx runs ok | failing files |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
