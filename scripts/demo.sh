#!/usr/bin/env bash
# The main job on the built-in sample data: key, encrypt a folder for a Gramine manifest, info,
# verify, decrypt, compare, run python3 inside the manifest's view (libos run), sign an enclave
# manifest and seal data to it on a simulated SGX platform (with a quote verified outside), and read
# the files back through the LibOS booted from the manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
PFS="$PWD/.venv/bin/pfs"
PY="$PWD/.venv/bin/python"
OUT=demo-out
rm -rf "$OUT" && mkdir -p "$OUT"
cp -r samples/data "$OUT/plain"
cp samples/app.manifest.toml samples/run.manifest.toml samples/sealed.manifest.toml "$OUT/"
cd "$OUT"  # the application's folder: the manifest's relative URIs (file:enc/) start here
# one bigger file, made here so the repository stays small (crosses the second MHT level)
"$PY" -c "import random; r=random.Random(7); open('plain/random-16MiB.bin','wb').write(r.randbytes(16<<20))"
echo "== gen-key";  "$PFS" gen-key -w wrap.key
echo "== encrypt";  "$PFS" encrypt -w wrap.key -i plain -o enc --manifest app.manifest.toml
echo "== info";     "$PFS" info enc/random-16MiB.bin -w wrap.key
echo "== verify";   "$PFS" verify -w wrap.key -V enc
echo "== decrypt";  "$PFS" decrypt -w wrap.key -i enc -o dec -V
echo "== compare";  diff -r plain dec && echo "demo: decrypted tree is identical to the input"
echo "== pandas";   "$PY" - <<'PY'
import os

import pandas as pd

# no decrypted copy on disk: pandas reads the encrypted CSV through the pfs fsspec file system
# (the files are bound as the manifest's encrypted mount binds them: enc/<path below enc>)
opts = {"key_file": "wrap.key", "bind_prefix": "enc", "root": "enc"}
enc = pd.read_csv(f"pfs::file://{os.getcwd()}/enc/reports/metrics.csv", storage_options={"pfs": opts})
plain = pd.read_csv("plain/reports/metrics.csv")
assert enc.equals(plain)
print(enc.describe().loc[["count", "mean", "max"]].round(1).to_string())
print(f"demo: pandas read {len(enc)} rows of enc/reports/metrics.csv (encrypted), equal to the plaintext read")
PY
LIBOS="$PWD/../.venv/bin/libos"
PROG='import csv, hashlib, os, sys
data, out = sys.argv[1], sys.argv[2]
rows = list(csv.reader(open(data + "/reports/metrics.csv")))
digest = hashlib.sha256(open(data + "/hello.txt", "rb").read()).hexdigest()
open(out, "w").write(f"{len(rows)} rows; hello.txt sha256 {digest}\n")
print("the program sees", sorted(os.listdir(data)), "in", data, "| /work exists:", os.path.exists("/work"))'
if [ "$(id -u)" = 0 ] && [ -e /dev/fuse ]; then
    # python3 inside the manifest's view: it reads and writes the encrypted /data as plain files
    echo "== libos run"; "$LIBOS" run -k default=wrap.key run.manifest.toml -- -c "$PROG" /data /data/summary.txt
    "$PFS" decrypt -q -w wrap.key -i enc/summary.txt -o summary.txt --expect-path enc/summary.txt
    /usr/bin/python3 -c "$PROG" plain native-summary.txt >/dev/null  # the same program, natively
    cmp summary.txt native-summary.txt && echo "demo: libos run wrote (encrypted): $(cat summary.txt), as a native run does"
    # sealed data and attestation on a simulated SGX platform (a platform file of the demo's own)
    echo "== libos sign"
    "$LIBOS" gen-private-key -o enclave-key.pem
    mkdir -p sealed out
    "$LIBOS" sign -q -k enclave-key.pem -m sealed.manifest.toml -o sealed.manifest.sgx -s sealed.sig
    MRENCLAVE=$("$LIBOS" sigstruct-view --json sealed.sig | "$PY" -c "import json, sys; print(json.load(sys.stdin)['mr_enclave'])")
    echo "demo: MRENCLAVE $MRENCLAVE"
    echo "== libos run (sealed)"
    SEAL='open("/sealed/secret.txt", "w").write("known only to this enclave\n")'
    UNSEAL='import os, sys
print("the enclave reads back:", open("/sealed/secret.txt").read().strip())
open("/dev/attestation/user_report_data", "wb").write(bytes.fromhex(sys.argv[1]))
open("/out/quote.bin", "wb").write(open("/dev/attestation/quote", "rb").read())'
    NONCE=$("$PY" -c "import secrets; print(secrets.token_hex(32))")
    "$LIBOS" run --platform platform.sgx sealed.manifest.sgx -- -c "$SEAL"
    "$LIBOS" run --platform platform.sgx sealed.manifest.sgx -- -c "$UNSEAL" "$NONCE"
    if grep -q "known only" sealed/secret.txt; then echo "demo: plaintext on the host!"; exit 1; fi
    if "$LIBOS" run --platform other-machine.sgx sealed.manifest.sgx -- -c 'open("/sealed/secret.txt").read()' 2>/dev/null; then
        echo "demo: another platform opened the sealed file!"; exit 1
    fi
    echo "demo: on another (simulated) machine the sealed file does not open (EACCES)"
    "$LIBOS" quote verify out/quote.bin --platform platform.sgx --mrenclave "$MRENCLAVE" --report-data "${NONCE}$(printf '0%.0s' {1..64})"
else
    echo "== libos run: skipped (needs root and /dev/fuse)"
fi
echo "== libos";    "$PY" - <<'PY'
import os

from libos import LibOS

p = LibOS.boot("app.manifest.toml").process()
fd = p.open("/dev/attestation/keys/default", os.O_WRONLY)  # provision the key, as an enclave would
p.write(fd, open("wrap.key", "rb").read())
p.close(fd)
count = 0
for folder, _, files in os.walk("plain"):
    for name in files:
        rel = os.path.relpath(os.path.join(folder, name), "plain")
        fd = p.open("/data/" + rel)
        got = bytearray()
        while chunk := p.read(fd, 1 << 20):
            got += chunk
        p.close(fd)
        assert got == open(os.path.join(folder, name), "rb").read(), rel
        count += 1
print(f"demo: {count} files read back through the LibOS as /data/... (app.manifest.toml, bound to enc/...)")
PY
