"""Platform adaptation layer: the small host ABI that the layers above use.

The first (and default) platform is plain Linux, in :mod:`pal.linux`.
"""

from .linux import HostFile, random_bytes, time_ns

__all__ = ["HostFile", "random_bytes", "time_ns"]
