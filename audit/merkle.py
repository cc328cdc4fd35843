"""Per-institution sub-chains and the Merkle root over their heads (the seed's 7.1 "global master hash").

Pure Python (no Django): the offline proof checker uses it. See docs/audit.md "Sub-chains".

- The sub-chain of institution X is the hash chain over X's entries in seq order:
  ``sub_0 = GENESIS``, ``sub_n = SHA-256(entry_hash_n || sub_{n-1})`` over the ASCII hex
  forms, exactly like the global chain hash. Entries without an institution form the
  sub-chain of the empty name "" (the system's own actions), so every entry is in exactly
  one sub-chain.
- A leaf is ``(institution, count, head)``; its hash is
  ``SHA-256(0x00 || ["<institution>",<count>,"<head>"])`` with the institution escaped as
  in the canonical form (JSON, raw UTF-8). Leaves are sorted by institution (code point
  order), one per institution.
- The root is the RFC 6962 Merkle tree hash over the leaf hashes: an inner node is
  ``SHA-256(0x01 || left || right)`` over the raw 32-byte digests, the left subtree takes
  the largest power of two below n. The prefixes keep a leaf from posing as a node. The
  root of no leaves is SHA-256 of the empty string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from hashlib import sha256
from json.encoder import encode_basestring

GENESIS = "0" * 64
Leaf = tuple[str, int, str]  # (institution, count, head)


def sub_hash(entry_hash: str, prev_sub: str) -> str:
    return sha256((entry_hash + prev_sub).encode("ascii")).hexdigest()


def leaf_bytes(institution: str, count: int, head: str) -> bytes:
    return f"[{encode_basestring(institution)},{count:d},{encode_basestring(head)}]".encode()


def leaf_hash(institution: str, count: int, head: str) -> bytes:
    return sha256(b"\x00" + leaf_bytes(institution, count, head)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(hashes: list[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node_hash(_mth(hashes[:k]), _mth(hashes[k:]))


def root(leaves: list[Leaf]) -> str:
    if not leaves:
        return sha256(b"").hexdigest()
    return _mth([leaf_hash(*leaf) for leaf in leaves]).hex()


def audit_path(leaves: list[Leaf], index: int) -> list[dict[str, str]]:
    """The siblings from leaf `index` up to the root, each with the side it sits on."""

    def walk(hashes: list[bytes], m: int) -> list[dict[str, str]]:
        if len(hashes) == 1:
            return []
        k = _split(len(hashes))
        if m < k:
            return walk(hashes[:k], m) + [{"side": "R", "hash": _mth(hashes[k:]).hex()}]
        return walk(hashes[k:], m - k) + [{"side": "L", "hash": _mth(hashes[:k]).hex()}]

    return walk([leaf_hash(*leaf) for leaf in leaves], index)


def root_from_path(leaf: bytes, path: list[dict[str, str]]) -> str:
    """Fold a path onto a leaf hash; ValueError if a step is malformed."""
    node = leaf
    for step in path:
        sibling = bytes.fromhex(step["hash"])
        if len(sibling) != 32 or step["side"] not in ("L", "R"):
            raise ValueError("a Merkle path step is not a side L/R with a 32-byte hash")
        node = node_hash(sibling, node) if step["side"] == "L" else node_hash(node, sibling)
    return node.hex()


class SubChains:
    """Sub-chain heads being advanced entry by entry (the verifier and the checkpoint signer)."""

    __slots__ = ("heads", "counts")

    def __init__(self, leaves: Iterable[Leaf] = ()) -> None:
        self.heads: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        for institution, count, head in leaves:
            self.heads[institution], self.counts[institution] = head, count

    def add(self, institution: str, entry_hash: str) -> None:
        self.heads[institution] = sha256((entry_hash + self.heads.get(institution, GENESIS)).encode()).hexdigest()
        self.counts[institution] = self.counts.get(institution, 0) + 1

    def leaves(self) -> list[Leaf]:
        return [(name, self.counts[name], self.heads[name]) for name in sorted(self.heads)]


def leaves_text(leaves: list[Leaf]) -> str:
    """How a checkpoint stores its leaves: compact JSON [[institution, count, head], ...]."""
    return json.dumps([list(leaf) for leaf in leaves], ensure_ascii=False, separators=(",", ":"))


def parse_leaves(text: str) -> list[Leaf]:
    """Stored leaves back as tuples; ValueError unless they are well-formed, sorted and unique."""
    data = json.loads(text) if text else []
    if not isinstance(data, list):
        raise ValueError("leaves are not a list")
    leaves: list[Leaf] = []
    for item in data:
        if (not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str)
                or type(item[1]) is not int or not isinstance(item[2], str) or len(item[2]) != 64):  # fmt: skip
            raise ValueError(f"malformed leaf {item!r}")
        if leaves and item[0] <= leaves[-1][0]:
            raise ValueError("leaves are not sorted by institution or repeat one")
        leaves.append((item[0], item[1], item[2]))
    return leaves


def diverged(expected: list[Leaf], actual: list[Leaf]) -> list[str]:
    """Institutions whose (count, head) differ between two leaf sets (missing on either side included)."""
    a, b = {x[0]: x[1:] for x in expected}, {x[0]: x[1:] for x in actual}
    return sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))
