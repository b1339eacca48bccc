#!/usr/bin/env bash
# The main job on the built-in sample data: key, encrypt a folder, info, verify, decrypt, compare.
set -euo pipefail
cd "$(dirname "$0")/.."
PFS=.venv/bin/pfs
OUT=demo-out
rm -rf "$OUT" && mkdir -p "$OUT"
cp -r samples/data "$OUT/plain"
# one bigger file, made here so the repository stays small (crosses the second MHT level)
.venv/bin/python -c "import random; r=random.Random(7); open('$OUT/plain/random-16MiB.bin','wb').write(r.randbytes(16<<20))"
echo "== gen-key";  $PFS gen-key -w "$OUT/wrap.key"
echo "== encrypt";  $PFS encrypt -w "$OUT/wrap.key" -i "$OUT/plain" -o "$OUT/enc" --bind-prefix /data
echo "== info";     $PFS info "$OUT/enc/random-16MiB.bin" -w "$OUT/wrap.key"
echo "== verify";   $PFS verify -w "$OUT/wrap.key" "$OUT/enc" --bind-prefix /data
echo "== decrypt";  $PFS decrypt -w "$OUT/wrap.key" -i "$OUT/enc" -o "$OUT/dec" --bind-prefix /data
echo "== compare";  diff -r "$OUT/plain" "$OUT/dec" && echo "demo: decrypted tree is identical to the input"
