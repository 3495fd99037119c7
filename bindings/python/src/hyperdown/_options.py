"""The original's options of ``hyperdown.create`` / ``hyperdown.aio.create`` as TypedDicts, one
per role, so that a type checker gives ``create`` a :class:`Server` for server options
(``isServer: True``) and a :class:`Client` for client options (``create`` is overloaded on them).
At run time they are plain dicts: hyperdown._compat checks them (unknown and missing options are
TypeErrors)."""
from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Sequence, Union

from ._keys import BytesLike, KeyPair

if sys.version_info >= (3, 8):
    from typing import Literal, TypedDict
else:  # pragma: no cover - requires-python >= 3.8
    raise ImportError("hyperdown needs Python 3.8 or later")

__all__ = ["ServerOptions", "ClientOptions", "KeyPairLike"]

KeyPairLike = Union[KeyPair, Dict[str, Any]]
"""A KeyPair, or the original's dict: ``{"scalar", "publicKey"}``, ``{"secretKey"}``,
``{"seed"}`` (values bytes or hex)."""


class _ServerRequired(TypedDict):
    uniqueKeyPair: KeyPairLike
    folderName: str
    isServer: Literal[True]
    onClientConsumedEvents: Callable[..., Any]


class ServerOptions(_ServerRequired, total=False):
    """A server's options: the original's required ones, then the optional ones (more keyword
    arguments of :class:`hyperdown.Server` are accepted at run time)."""

    testFolder: str
    listen: str
    data_dir: str
    next_keypair: KeyPair
    metrics_listen: str


class _ClientRequired(TypedDict):
    uniqueKeyPair: KeyPairLike
    folderName: str
    serverPublicKey: Union[BytesLike, Sequence[BytesLike]]
    connect: Union[str, Sequence[str]]
    eventHandler: Callable[..., Any]


class ClientOptions(_ClientRequired, total=False):
    """A client's options (``isServer`` absent or False)."""

    isServer: Literal[False]
    testFolder: str
    offline: bool
    data_dir: str
