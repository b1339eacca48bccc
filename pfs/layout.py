"""Node layout of the protected-file format: sizes, node numbers and counts.

Everything here is pure arithmetic on the format's constants (see docs/format.md).
"""

from __future__ import annotations

NODE_SIZE = 4096
KEY_SIZE = 16
MAC_SIZE = 16
NONCE_SIZE = 32
IV = bytes(12)  # always zero: every key encrypts exactly one node, once

FILE_ID = b"GRAFS_PF"
MAJOR_VERSION = 2
MINOR_VERSION = 0
V1_MAJOR_VERSION = 1

PATH_FIELD_SIZE = 772
MD_USER_DATA_SIZE = 3072  # plaintext bytes kept inside the metadata node

# Metadata node, plaintext header (v2).
HEADER_SIZE = 59
HEADER_SIZE_V1 = 58
OFF_FILE_ID = 0
OFF_MAJOR = 8
OFF_MINOR = 9
OFF_NONCE = 10
OFF_META_MAC = 42
OFF_FLAGS = 58
FLAG_UPDATE_PENDING = 0x01

# Encrypted part of the metadata node.
ENCRYPTED_PART_SIZE = 3884
EP_OFF_PATH = 0
EP_OFF_SIZE = 772
EP_OFF_ROOT_KEY = 780
EP_OFF_ROOT_MAC = 796
EP_OFF_DATA = 812

# MHT node: 96 data-node entries then 32 child-MHT entries, each key(16) + mac(16).
ENTRY_SIZE = KEY_SIZE + MAC_SIZE
DATA_ENTRIES_PER_MHT = 96
CHILD_MHT_ENTRIES = 32
CHILD_ENTRIES_OFFSET = DATA_ENTRIES_PER_MHT * ENTRY_SIZE  # 3072
NODES_PER_GROUP = 1 + DATA_ENTRIES_PER_MHT  # an MHT node followed by its data nodes

RECOVERY_RECORD_SIZE = 8 + NODE_SIZE


def data_node_count(size: int) -> int:
    """Number of data nodes (outside the metadata node) a plaintext of ``size`` needs."""
    if size <= MD_USER_DATA_SIZE:
        return 0
    return (size - MD_USER_DATA_SIZE + NODE_SIZE - 1) // NODE_SIZE


def mht_node_count(size: int) -> int:
    """Number of MHT nodes a plaintext of ``size`` needs."""
    ndata = data_node_count(size)
    return 0 if ndata == 0 else (ndata - 1) // DATA_ENTRIES_PER_MHT + 1


def node_count(size: int) -> int:
    """Total number of 4096-byte nodes in the encrypted file for a plaintext of ``size``."""
    return 1 + mht_node_count(size) + data_node_count(size)


def data_node_of(offset: int) -> int:
    """Data node index holding plaintext byte ``offset`` (``offset >= 3072``)."""
    return (offset - MD_USER_DATA_SIZE) // NODE_SIZE


def data_node_offset(d: int) -> int:
    """Plaintext offset of the first byte of data node ``d``."""
    return MD_USER_DATA_SIZE + d * NODE_SIZE


def data_physical(d: int) -> int:
    """Physical node number of data node ``d``."""
    return d + 2 + d // DATA_ENTRIES_PER_MHT


def mht_physical(m: int) -> int:
    """Physical node number of MHT node ``m``."""
    return 1 + NODES_PER_GROUP * m


def mht_parent(m: int) -> int:
    """Parent MHT index of MHT node ``m >= 1``."""
    return (m - 1) // CHILD_MHT_ENTRIES


def mht_entry_offset_in_parent(m: int) -> int:
    """Byte offset of MHT node ``m``'s key/tag entry inside its parent's plaintext."""
    return CHILD_ENTRIES_OFFSET + ((m - 1) % CHILD_MHT_ENTRIES) * ENTRY_SIZE


def data_entry_offset(d: int) -> int:
    """Byte offset of data node ``d``'s key/tag entry inside its MHT node's plaintext."""
    return (d % DATA_ENTRIES_PER_MHT) * ENTRY_SIZE


def mht_depth(m: int) -> int:
    """Depth of MHT node ``m`` in the tree (root = 0)."""
    depth = 0
    while m:
        m = mht_parent(m)
        depth += 1
    return depth


def physical_to_logical(node: int) -> tuple[str, int]:
    """Map a physical node number to ("meta", 0), ("mht", m) or ("data", d)."""
    if node == 0:
        return ("meta", 0)
    group, pos = divmod(node - 1, NODES_PER_GROUP)
    if pos == 0:
        return ("mht", group)
    return ("data", group * DATA_ENTRIES_PER_MHT + pos - 1)


def plaintext_range_of_node(node: int) -> tuple[int, int]:
    """Plaintext byte range [start, end) stored in physical ``node``.

    For an MHT node this is the range of its own 96 data nodes (the data of its child
    MHT nodes, further on in the file, depends on it too).
    """
    kind, index = physical_to_logical(node)
    if kind == "meta":
        return (0, MD_USER_DATA_SIZE)
    if kind == "data":
        start = data_node_offset(index)
        return (start, start + NODE_SIZE)
    start = data_node_offset(index * DATA_ENTRIES_PER_MHT)
    return (start, start + DATA_ENTRIES_PER_MHT * NODE_SIZE)


RECOVERY_SUFFIX = ".gramine.recovery"  # Gramine's recovery journal of FILE is FILE + this
