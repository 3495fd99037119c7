"""Hyperdown for Python: keys, topics, errors and the server/client handles of the C core.

The plain API (this module) calls your callbacks on the core's loop thread; ``hyperdown.aio``
hands them to an asyncio loop. See README.md ("Threading model").
"""
from __future__ import annotations

from typing import Any, Dict, Union, overload

from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _errors_all
from ._events import (DEFER, AddItem, AddResult, HeldStore, ClientStats, ConsumedBatch, ConsumedEvent, DeadLetter,
                      Event, FanoutResult, Notice, Payload, PendingEvent, RollbackStats,
                      ServerStats, decode_payload, encode_payload)
from ._handles import (AddCallback, AddItemLike, AddResultCallback, Authorization,
                       AuthorizeCallback, CallbackErrorHandler, Client, backup_folder,
                       ConsumedHandler, DeadLetterCallback, EventHandler, LogCallback, LogLevel,
                       NoticeHandler, PeerCallback, PeerClosedCallback, Server)
from ._hyperdown import ffi as _ffi, lib as _lib
from ._options import ClientOptions, KeyPairLike, ServerOptions
from ._keys import (PROTOCOL_VERSION, PUBLICKEY_BYTES, SCALAR_BYTES, SECRETKEY_BYTES, SEED_BYTES,
                    TOPIC_BYTES, BytesLike, KeyPair, abi_version, check_public_key, hex_decode,
                    hex_encode, topic_key, version, version_hex)

__version__ = "0.1.0"

# the core this extension loaded must be ABI-compatible with the header it was compiled from
if _lib.hd_check_version(_lib.HD_ABI_VERSION, _lib.HD_VERSION_HEX) != 0:  # pragma: no cover
    raise ImportError(
        f"hyperdown: the loaded core {version()} (ABI {abi_version()}) does not match the header "
        f"the extension was built with (ABI {_lib.HD_ABI_VERSION}); rebuild the package")



ADD_EVENTS_MAX: int = _lib.HD_ADD_EVENTS_MAX
"""Most items of one :meth:`Server.add_events` call."""


@overload
def create(options: ServerOptions) -> Server: ...
@overload
def create(options: ClientOptions) -> Client: ...
@overload
def create(options: Dict[str, Any]) -> Union[Server, Client]: ...


def create(options: Any) -> Union[Server, Client]:
    """The original's ``require('hyperdown')(options)``: a :class:`Server` (``isServer``) or a
    :class:`Client` from the original's option names (``uniqueKeyPair``, ``folderName``,
    ``testFolder``, ``isServer``, ``serverPublicKey``, ``onClientConsumedEvents``,
    ``eventHandler``) plus ``listen`` / ``connect``; typed by role (server options, with
    ``isServer: True``, give a Server). Unknown options and missing required ones
    (``uniqueKeyPair``, ``folderName``, a server's ``onClientConsumedEvents``, a client's
    ``eventHandler``, ``serverPublicKey`` and ``connect``) raise TypeError.
    ``onClientConsumedEvents`` gets the user's key as hex, as in the original. Storage: ``folderName[/testFolder]`` under
    the current directory unless ``data_dir`` is given. Callbacks in the original's form get a
    ``cb`` (``cb(ok)`` for consumption, ``cb(id, ok)`` for events) that completes, from any
    thread. See hyperdown._compat for the whole table."""
    from ._compat import resolve
    kind, args, kwargs = resolve(options, aio=False)
    return Server(*args, **kwargs) if kind == "server" else Client(*args, **kwargs)


__all__ = [
    "create", "ServerOptions", "ClientOptions", "KeyPairLike", "AddItem", "AddItemLike",
    "HeldStore", "Authorization", "AuthorizeCallback", "backup_folder", "ADD_EVENTS_MAX", "DEFER", "Payload", "ConsumedEvent", "ConsumedBatch", "ServerStats", "ClientStats",
    "RollbackStats", "PendingEvent", "AddResult", "FanoutResult", "DeadLetter", "Notice",
    "AddResultCallback", "NoticeHandler", "DeadLetterCallback",
    "encode_payload", "decode_payload", "ConsumedHandler", "AddCallback",
    *_errors_all,
    "KeyPair", "BytesLike", "topic_key", "hex_encode", "hex_decode", "check_public_key",
    "version", "version_hex", "abi_version", "Server", "Client", "Event", "EventHandler", "LogLevel", "PeerCallback",
    "PeerClosedCallback", "LogCallback", "CallbackErrorHandler", "PUBLICKEY_BYTES",
    "SCALAR_BYTES", "SEED_BYTES", "SECRETKEY_BYTES", "TOPIC_BYTES", "PROTOCOL_VERSION",
]
