"""Deterministic hashing and invertible tags for the simulated world.

A player's tag encodes (its clan, its index in the clan's player pool) and a CWL
war tag encodes (the clan whose group it belongs to, season, round, pair), each
scrambled by an affine map seeded by the world seed. So ``GET /players/{tag}``
and ``GET /clanwarleagues/wars/{tag}`` are answered from the tag alone: no request
history is needed and any order of requests gives the same answers.
"""

from __future__ import annotations

from functools import lru_cache
from hashlib import blake2b

from clash_pipeline.clash_api.tags import TAG_ALPHABET, TAG_MAX_LENGTH

_BASE = len(TAG_ALPHABET)  # 14
_INDEX = {ch: i for i, ch in enumerate(TAG_ALPHABET)}
_INV_2_64 = 1.0 / (1 << 64)


def h64(seed: int, *parts: int | str) -> int:
    """A 64-bit hash of the seed and the parts (ints or short strings)."""
    data = b"%d" % seed
    for part in parts:
        data += b"|%d" % part if isinstance(part, int) else b"|" + part.encode()
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


_M64 = (1 << 64) - 1


def mix64(*ints: int) -> int:
    """A fast 64-bit hash of integers (hot paths only; strings go through :func:`h64`).

    CPython's tuple hash of ints is fixed (no per-process salt, unlike str), and the
    murmur3 finaliser spreads it over all 64 bits.
    """
    x = hash(ints) & _M64
    x = ((x ^ (x >> 33)) * 0xFF51AFD7ED558CCD) & _M64
    x = ((x ^ (x >> 33)) * 0xC4CEB9FE1A85EC53) & _M64
    return x ^ (x >> 33)


def unit(seed: int, *parts: int | str) -> float:
    """A float in [0, 1) from a hash of the seed and the parts."""
    return h64(seed, *parts) * _INV_2_64


@lru_cache(maxsize=65536)
def tag_number(tag: str) -> int:
    """Bijective base-14 value of a tag body: distinct tags give distinct positive ints."""
    value = 0
    for ch in tag.lstrip("#"):
        value = value * _BASE + _INDEX[ch] + 1
    return value


def tag_from_number(value: int) -> str:
    chars: list[str] = []
    while value > 0:
        digit = value % _BASE or _BASE
        chars.append(TAG_ALPHABET[digit - 1])
        value = (value - digit) // _BASE
    return "#" + "".join(reversed(chars))


class TagCodec:
    """Maps integers to tags of at least ``min_length`` characters and back.

    The first character is never ``0`` (as in real tags). An integer maps to the
    shortest length that holds it, so decoding rejects non-canonical tags.
    """

    def __init__(self, seed: int, kind: str, *, min_length: int) -> None:
        self.min_length = min_length
        # Multiplier coprime to 2, 7 and 13 (the factors of every modulus used below).
        mult = h64(seed, "codec-mult", kind) | 1
        while mult % 7 == 0 or mult % 13 == 0:
            mult += 2
        self._mult = mult
        self._shift = h64(seed, "codec-shift", kind)
        self._moduli = {n: self._modulus(n) for n in range(min_length, TAG_MAX_LENGTH + 2)}

    @staticmethod
    def _modulus(length: int) -> int:
        # Tags of this length whose first character is not "0".
        modulus: int = (_BASE - 1) * _BASE ** (length - 1)  # int ** int is typed Any
        return modulus

    def _length_for(self, number: int) -> int:
        length = self.min_length
        while length <= TAG_MAX_LENGTH and number >= self._moduli[length]:
            length += 1
        return length

    def encode(self, number: int) -> str | None:
        """The tag of ``number``, or None when it would be longer than a tag may be."""
        length = self._length_for(number)
        if length > TAG_MAX_LENGTH:
            return None
        modulus = self._moduli[length]
        value = (self._mult * number + self._shift) % modulus + _BASE ** (length - 1)
        digits = []
        for _ in range(length):
            value, digit = divmod(value, _BASE)
            digits.append(TAG_ALPHABET[digit])
        return "#" + "".join(reversed(digits))

    def decode(self, tag: str) -> int | None:
        body = tag.lstrip("#")
        length = len(body)
        if length < self.min_length or body[0] == TAG_ALPHABET[0]:
            return None
        value = 0
        for ch in body:
            value = value * _BASE + _INDEX[ch]
        modulus = self._modulus(length)
        inverse = pow(self._mult, -1, modulus)
        number: int = (inverse * (value - _BASE ** (length - 1) - self._shift)) % modulus
        if self._length_for(number) != length:
            return None
        return number


def random_tag(seed: int, *parts: int | str, length: int | None = None) -> str:
    """A valid, hash-derived tag (8 or 9 characters, never starting with 0)."""
    h = h64(seed, "tag", *parts)
    size = length or (8 if h & 1 else 9)
    h >>= 1
    chars = [TAG_ALPHABET[1 + h % (_BASE - 1)]]
    h //= _BASE - 1
    for _ in range(size - 1):
        h, digit = divmod(h, _BASE)
        chars.append(TAG_ALPHABET[digit])
        if h < _BASE:
            h = h64(seed, "tag-more", *parts, len(chars))
    return "#" + "".join(chars)
