"""Key pairs, topic keys, hex and versions: thin wrappers over the core's functions."""
from __future__ import annotations

from typing import Any, Union

from ._errors import check, InvalidArgumentError
from ._hyperdown import ffi, lib

__all__ = ["KeyPair", "BytesLike", "topic_key", "hex_encode", "hex_decode", "version",
           "version_hex", "abi_version", "PUBLICKEY_BYTES", "SCALAR_BYTES", "SEED_BYTES",
           "SECRETKEY_BYTES", "TOPIC_BYTES", "PROTOCOL_VERSION"]

BytesLike = Union[bytes, bytearray, memoryview, str]
"""Binary input: bytes-like, or a hex string (either case) of the exact length."""

PUBLICKEY_BYTES: int = lib.HD_PUBLICKEY_BYTES
SCALAR_BYTES: int = lib.HD_SCALAR_BYTES
SEED_BYTES: int = lib.HD_SEED_BYTES
SECRETKEY_BYTES: int = lib.HD_SECRETKEY_BYTES
TOPIC_BYTES: int = lib.HD_TOPIC_BYTES
PROTOCOL_VERSION: int = lib.HD_PROTOCOL_VERSION


def hex_encode(data: Union[bytes, bytearray, memoryview]) -> str:
    """Lower-case hex of ``data`` (hd_hex_encode)."""
    raw = bytes(data)
    out = ffi.new("char[]", 2 * len(raw) + 1)
    check(lib.hd_hex_encode(out, len(out), raw, len(raw)))
    return ffi.string(out).decode("ascii")


def hex_decode(text: str, length: int) -> bytes:
    """Exactly ``length`` bytes from ``2*length`` hex digits; InvalidHexError otherwise."""
    out = ffi.new("uint8_t[]", length)
    check(lib.hd_hex_decode(out, length, text.encode("ascii", "replace")))
    return bytes(ffi.buffer(out, length))


def _as_bytes(value: BytesLike, length: int, what: str) -> bytes:
    if isinstance(value, str):
        return hex_decode(value, length)
    raw = bytes(value)
    if len(raw) != length:
        raise InvalidArgumentError(lib.HD_EINVAL, f"{what} must be {length} bytes, got {len(raw)}")
    return raw


class KeyPair:
    """An Ed25519 identity, kept as the core keeps it: the public key and the clamped scalar.

    Build one with :meth:`generate`, :meth:`from_seed`, :meth:`from_secret_key` or
    :meth:`from_scalar` (keypear's ``{ scalar, publicKey }``). Every constructor checks that the
    halves belong together and raises :class:`InvalidKeyError` with the core's message if not.
    """

    __slots__ = ("_kp",)

    def __init__(self, _kp: Any) -> None:
        # use the class methods; this takes a verified hd_keypair_t *
        self._kp = _kp

    @classmethod
    def _build(cls, fn: Any, *args: Any) -> "KeyPair":
        kp = ffi.new("hd_keypair_t *")
        check(fn(kp, *args))
        return cls(kp)

    @classmethod
    def generate(cls) -> "KeyPair":
        return cls._build(lib.hd_keypair_generate)

    @classmethod
    def from_seed(cls, seed: BytesLike) -> "KeyPair":
        return cls._build(lib.hd_keypair_from_seed, _as_bytes(seed, SEED_BYTES, "seed"))

    @classmethod
    def from_secret_key(cls, secret_key: BytesLike) -> "KeyPair":
        """libsodium's 64-byte ``crypto_sign`` secret key (seed || public key)."""
        return cls._build(lib.hd_keypair_from_secret_key,
                          _as_bytes(secret_key, SECRETKEY_BYTES, "secret key"))

    @classmethod
    def from_scalar(cls, scalar: BytesLike, public_key: BytesLike) -> "KeyPair":
        """keypear's form: the clamped secret scalar and the public key."""
        return cls._build(lib.hd_keypair_from_scalar, _as_bytes(scalar, SCALAR_BYTES, "scalar"),
                          _as_bytes(public_key, PUBLICKEY_BYTES, "public key"))

    @property
    def public_key(self) -> bytes:
        return bytes(ffi.buffer(self._kp.public_key, PUBLICKEY_BYTES))

    @property
    def public_key_hex(self) -> str:
        return hex_encode(self.public_key)

    @property
    def scalar(self) -> bytes:
        """The secret scalar (keep it secret)."""
        return bytes(ffi.buffer(self._kp.scalar, SCALAR_BYTES))

    def verify(self) -> bool:
        """True if the scalar still gives the public key (every constructor checked it once)."""
        return lib.hd_keypair_verify(self._kp) == 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyPair) and self.public_key == other.public_key and \
            self.scalar == other.scalar

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"KeyPair(public_key={self.public_key_hex!r})"

    def __del__(self) -> None:
        kp = getattr(self, "_kp", None)
        if kp is not None:
            lib.hd_keypair_wipe(kp)


def check_public_key(public_key: BytesLike) -> bytes:
    """The 32 bytes of a public key usable as a peer identity; InvalidKeyError otherwise."""
    raw = _as_bytes(public_key, PUBLICKEY_BYTES, "public key")
    check(lib.hd_publickey_check(raw))
    return raw


def topic_key(name: Union[str, bytes]) -> bytes:
    """The 32-byte topic key of a folder name (hd_topic_key)."""
    raw = name.encode("utf-8") if isinstance(name, str) else bytes(name)
    out = ffi.new("uint8_t[]", TOPIC_BYTES)
    check(lib.hd_topic_key(out, raw, len(raw)))
    return bytes(ffi.buffer(out, TOPIC_BYTES))


def version() -> str:
    """The loaded core's release version, e.g. ``"0.1.0"``."""
    return ffi.string(lib.hd_version_string()).decode("ascii")


def version_hex() -> int:
    """The loaded core's HD_VERSION_HEX (0xMMmmpp)."""
    return int(lib.hd_version())


def abi_version() -> int:
    return int(lib.hd_abi_version())
