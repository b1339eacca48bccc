"""Command-line tools: pfs, pfs-encrypt."""
