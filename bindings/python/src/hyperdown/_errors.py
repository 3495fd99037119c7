"""Exceptions built from the C core's error codes (HD_ERRNO_MAP in include/hyperdown.h)."""
from __future__ import annotations

from typing import Dict, Optional, Type

from ._hyperdown import ffi, lib

__all__ = [
    "HyperdownError", "InvalidArgumentError", "OutOfMemoryError", "InitializationError",
    "VersionMismatchError", "InvalidKeyError", "InvalidHexError", "TopicMismatchError",
    "AuthenticationError", "ProtocolError", "MessageTooLargeError", "TimedOutError",
    "ConnectRefusedError", "ConnectResetError", "AddressInUseError", "InvalidAddressError",
    "InputOutputError", "ClosedError", "BusyError", "NoSpaceError", "StorageError",
    "CorruptDataError", "CanceledError", "NotFoundError", "AlreadyDoneError",
    "BufferTooSmallError", "InvalidStateError", "PeerClosedError", "WrongThreadError",
    "ReplacedError", "LimitError",
    "error_codes", "error_from_code",
]


def _str(p: object) -> str:
    return "" if p == ffi.NULL else ffi.string(p).decode("utf-8", "replace")  # type: ignore[arg-type]


class HyperdownError(Exception):
    """A failure reported by the C core.

    ``code`` is the negative ``HD_E*`` value, ``name`` its name without prefix (``"EAUTH"``),
    ``message`` the core's detail (``hd_last_error_message()``) or, when it gave none, the code's
    static description (``hd_strerror()``).
    """

    code: int
    name: str
    message: str

    def __init__(self, code: int, message: Optional[str] = None) -> None:
        self.code = code
        self.name = _str(lib.hd_err_name(code))
        self.description = _str(lib.hd_strerror(code))
        self.message = message or self.description
        super().__init__(f"{self.name}: {self.message}")

    def __reduce__(self):  # type: ignore[override]
        return (error_from_code, (self.code, self.message))


class InvalidArgumentError(HyperdownError, ValueError):
    """HD_EINVAL"""


class OutOfMemoryError(HyperdownError, MemoryError):
    """HD_ENOMEM"""


class InitializationError(HyperdownError):
    """HD_EINIT: the library (libsodium) could not initialise."""


class VersionMismatchError(HyperdownError):
    """HD_EVERSION: the loaded core is not ABI-compatible with the header the binding was built with."""


class InvalidKeyError(HyperdownError, ValueError):
    """HD_EKEY: a key pair does not verify, or a public key is not a valid Ed25519 point."""


class InvalidHexError(HyperdownError, ValueError):
    """HD_EHEX: not valid hexadecimal of the expected length."""


class TopicMismatchError(HyperdownError):
    """HD_ETOPIC: the peer is on another topic (folder name)."""


class AuthenticationError(HyperdownError):
    """HD_EAUTH: the handshake failed to authenticate (wrong server key, unknown peer...)."""


class ProtocolError(HyperdownError):
    """HD_EPROTO"""


class MessageTooLargeError(HyperdownError):
    """HD_EMSGSIZE"""


class TimedOutError(HyperdownError):
    """HD_ETIMEDOUT (a handshake or an idle connection timed out)."""


class ConnectRefusedError(HyperdownError):
    """HD_ECONNREFUSED: nothing listens at the address dialled."""


class ConnectResetError(HyperdownError):
    """HD_ECONNRESET: the peer reset the connection."""


class AddressInUseError(HyperdownError):
    """HD_EADDRINUSE"""


class InvalidAddressError(HyperdownError, ValueError):
    """HD_EADDR: an address that does not parse (``"127.0.0.1:7000"``, ``"[::1]:0"``)."""


class InputOutputError(HyperdownError):
    """HD_EIO"""


class ClosedError(HyperdownError):
    """HD_ECLOSED: the handle is closed or closing."""


class BusyError(HyperdownError):
    """HD_EBUSY: the folder is in use by another process."""


class NoSpaceError(HyperdownError):
    """HD_ENOSPC"""


class StorageError(HyperdownError):
    """HD_ESTORE"""


class CorruptDataError(HyperdownError):
    """HD_ECORRUPT"""


class CanceledError(HyperdownError):
    """HD_ECANCELED"""


class NotFoundError(HyperdownError):
    """HD_ENOTFOUND"""


class AlreadyDoneError(HyperdownError):
    """HD_EALREADY"""


class BufferTooSmallError(HyperdownError):
    """HD_EBUFSIZE"""


class InvalidStateError(HyperdownError):
    """HD_ESTATE"""


class PeerClosedError(HyperdownError):
    """HD_EBYE: the peer closed the connection."""


class WrongThreadError(HyperdownError):
    """HD_ETHREAD: e.g. close_wait() called from the handle's own loop thread."""


class ReplacedError(HyperdownError):
    """HD_EREPLACED: a newer connection with the same key took this one's place."""


class LimitError(HyperdownError):
    """HD_ELIMIT: the user's limit of held events or bytes is reached (the server's
    ``max_pending_per_user`` / ``max_bytes_per_user`` under ``overflow="reject"``)."""


def error_codes() -> Dict[str, int]:
    """Every error the core defines, ``{"EINVAL": -1, ...}``, read from the compiled enum."""
    return {name[3:]: value for value, name in ffi.typeof("hd_errno_t").elements.items()
            if name != "HD_ERRNO_MIN"}


_BY_NAME: Dict[str, Type[HyperdownError]] = {
    "EINVAL": InvalidArgumentError, "ENOMEM": OutOfMemoryError, "EINIT": InitializationError,
    "EVERSION": VersionMismatchError, "EKEY": InvalidKeyError, "EHEX": InvalidHexError,
    "ETOPIC": TopicMismatchError, "EAUTH": AuthenticationError, "EPROTO": ProtocolError,
    "EMSGSIZE": MessageTooLargeError, "ETIMEDOUT": TimedOutError,
    "ECONNREFUSED": ConnectRefusedError, "ECONNRESET": ConnectResetError,
    "EADDRINUSE": AddressInUseError, "EADDR": InvalidAddressError, "EIO": InputOutputError,
    "ECLOSED": ClosedError, "EBUSY": BusyError, "ENOSPC": NoSpaceError, "ESTORE": StorageError,
    "ECORRUPT": CorruptDataError, "ECANCELED": CanceledError, "ENOTFOUND": NotFoundError,
    "EALREADY": AlreadyDoneError, "EBUFSIZE": BufferTooSmallError, "ESTATE": InvalidStateError,
    "EBYE": PeerClosedError, "ETHREAD": WrongThreadError,
    "EREPLACED": ReplacedError, "ELIMIT": LimitError,
}
# keyed by the code the compiled header gives each name: never a hand-copied number
_BY_CODE: Dict[int, Type[HyperdownError]] = {
    code: _BY_NAME[name] for name, code in error_codes().items() if name in _BY_NAME
}


def error_from_code(code: int, message: Optional[str] = None) -> HyperdownError:
    """The exception for ``code`` (a subclass when one exists, HyperdownError otherwise)."""
    return _BY_CODE.get(code, HyperdownError)(code, message)


def last_error(code: int) -> HyperdownError:
    """The exception for a code just returned on this thread, with the core's detail."""
    return error_from_code(code, _str(lib.hd_last_error_message()))


def check(rc: int) -> int:
    if rc < 0:
        raise last_error(rc)
    return rc
