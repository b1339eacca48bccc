"""Virtual file system: mount table, path walk, file systems, FUSE bridge (issue 3/4)."""
