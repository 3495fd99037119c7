"""``hyperdown.create(options)``: the original's option names (see docs/python.md).

Option              meaning
------------------  -----------------------------------------------------------------------------
uniqueKeyPair       required: a KeyPair, or a dict: ``{"publicKey", "scalar"}`` (keypear),
                    ``{"publicKey", "secretKey"}`` (libsodium's 64 bytes) or ``{"seed"}``; values
                    bytes or hex
folderName          required: the topic, and the storage folder (relative to the current directory)
testFolder          an inner folder of folderName for the storage (several peers in one script)
isServer            True for a server
serverPublicKey     a client's server key (bytes or hex), or a list of keys (key rollover)
onClientConsumedEvents(remotePublicKey, events, cb)   required for a server; ``cb(ok)``;
                    remotePublicKey is the user's key as lower-case hex, as the original gave it
eventHandler(id, data, cb)                            required for a client; ``cb(id, ok)``
offline             accepted and ignored (a client is always able to start offline)
listen              the server's address (default "127.0.0.1:0")
connect             the client's server address, or a list of addresses (required for a client)
data_dir            overrides folderName[/testFolder] as the storage folder

Any other key must be a keyword argument of hyperdown.Server / hyperdown.Client (or their
hyperdown.aio twins); an unknown key is a TypeError naming it, as a missing required one is.
The callbacks may also use the Python forms: ``onClientConsumedEvents(user_hex, events)`` and
``eventHandler(id, data)`` returning a result, or ``eventHandler(event)``.
"""
from __future__ import annotations

import difflib
import inspect
import os
from typing import Any, Callable, Dict, Optional, Tuple

from ._events import DEFER
from ._keys import KeyPair

__all__ = ["resolve", "keypair_from"]


class _Done:
    """What the original-style ``cb`` returns: awaitable (``await cb(id, True)``) and harmless
    when not awaited."""

    __slots__ = ()

    def __await__(self) -> Any:
        return iter(())

    def __repr__(self) -> str:
        return "<done>"


_DONE = _Done()


def keypair_from(value: Any) -> KeyPair:
    """A KeyPair from a KeyPair or a dict in one of the original's forms."""
    if isinstance(value, KeyPair):
        return value
    if not isinstance(value, dict):
        raise TypeError("uniqueKeyPair must be a hyperdown.KeyPair or a dict with publicKey and "
                        "scalar (or secretKey, or seed)")
    get = lambda *names: next((value[n] for n in names if value.get(n) is not None), None)  # noqa: E731
    pk = get("publicKey", "public_key")
    scalar = get("scalar")
    secret = get("secretKey", "secret_key")
    seed = get("seed")
    if scalar is not None:
        if pk is None:
            raise TypeError("uniqueKeyPair: a scalar needs its publicKey")
        return KeyPair.from_scalar(scalar, pk)
    if secret is not None:
        kp = KeyPair.from_secret_key(secret)
    elif seed is not None:
        kp = KeyPair.from_seed(seed)
    else:
        raise TypeError("uniqueKeyPair needs scalar (with publicKey), secretKey or seed")
    if pk is not None:
        want = bytes.fromhex(pk) if isinstance(pk, str) else bytes(pk)
        if want != kp.public_key:
            from ._errors import InvalidKeyError
            from ._hyperdown import lib
            raise InvalidKeyError(lib.HD_EKEY, "uniqueKeyPair: publicKey does not match the secret")
    return kp


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    n = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return 99
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            n += 1
    return n


def _after(result: Any) -> Any:
    """DEFER once the original-style callback returned (its cb completes), awaiting it first."""
    if inspect.isawaitable(result):
        async def wait() -> Any:
            await result
            return DEFER
        return wait()
    return DEFER


def wrap_consumed(fn: Optional[Callable[..., Any]], aio: bool) -> Optional[Callable[..., Any]]:
    if fn is None:
        return None
    _no_coroutine(fn, aio, "onClientConsumedEvents")
    # the original handed the user's key as hex (its own example logs it in a template string)
    if _arity(fn) < 3:
        return lambda user, batch: fn(user.hex(), batch)  # (user_hex, events) -> result

    def handler(user: bytes, batch: Any) -> Any:
        def cb(ok: Any = True) -> _Done:
            if not batch.completed:
                batch.complete(bool(ok))
            return _DONE
        return _after(fn(user.hex(), batch, cb))
    return handler


def wrap_event(fn: Callable[..., Any], aio: bool) -> Callable[..., Any]:
    _no_coroutine(fn, aio, "eventHandler")
    n = _arity(fn)
    if n <= 1:
        return fn  # (event) -> result
    if n == 2:
        return lambda ev: fn(ev.id, ev.payload)  # (id, data) -> result

    def handler(ev: Any) -> Any:
        def cb(_id: Any = None, ok: Any = True, data: Any = None) -> _Done:
            if not ev.completed:
                ev.complete(bool(ok), data)
            return _DONE
        return _after(fn(ev.id, ev.payload, cb))
    return handler


def _no_coroutine(fn: Callable[..., Any], aio: bool, what: str) -> None:
    if not aio and inspect.iscoroutinefunction(fn):
        raise TypeError(f"{what} is a coroutine function: use hyperdown.aio.create")


_ORIGINAL = {"uniqueKeyPair", "folderName", "testFolder", "isServer", "offline", "data_dir"}
_SERVER_ONLY = {"onClientConsumedEvents", "listen"}
_CLIENT_ONLY = {"serverPublicKey", "eventHandler", "connect"}


def _keywords(cls: Any) -> set:
    """The public keyword arguments of a Server/Client class."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.kind == p.KEYWORD_ONLY and not p.name.startswith("_")}


def _unknown(key: str, known: set, kind: str) -> TypeError:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return TypeError(f"hyperdown.create: unknown option {key!r} for a {kind}{hint}")


def _required(opts: Dict[str, Any], key: str, kind: str, why: str) -> Any:
    value = opts.pop(key, None)
    if value is None:
        raise TypeError(f"hyperdown.create: a {kind} needs option {key} ({why})")
    return value


def resolve(options: Dict[str, Any], aio: bool) -> Tuple[str, Tuple[Any, ...], Dict[str, Any]]:
    """(kind, args, kwargs) for Server/Client from the original's options. Unknown options and
    missing required ones are TypeErrors that name them."""
    if aio:
        from .aio import Client, Server
    else:
        from ._handles import Client, Server  # type: ignore[assignment]
    opts = dict(options)
    is_server = bool(opts.pop("isServer", False))
    kind = "server" if is_server else "client"
    kp = keypair_from(_required(opts, "uniqueKeyPair", kind,
                                "its identity: a restarted peer must keep its key"))
    folder = _required(opts, "folderName", kind, "the topic and the storage folder")
    if not isinstance(folder, str) or not folder:
        raise TypeError("folderName must be a non-empty string")
    test_folder = opts.pop("testFolder", None)
    opts.pop("offline", None)
    data_dir = opts.pop("data_dir", None)
    if data_dir is None:
        data_dir = os.path.join(os.getcwd(), folder, *([test_folder] if test_folder else []))
    if is_server:
        for key in _CLIENT_ONLY:
            if key in opts:
                raise TypeError(f"hyperdown.create: {key} is a client option (isServer is set)")
        on_consumed = wrap_consumed(_required(opts, "onClientConsumedEvents", kind,
                                              "what to do with the events users consumed"), aio)
        listen = opts.pop("listen", "127.0.0.1:0")
        known = _keywords(Server) - {"on_consumed", "data_dir"}
        for key in opts:
            if key not in known:
                raise _unknown(key, known | _ORIGINAL | _SERVER_ONLY, kind)
        return "server", (kp, folder, listen), dict(data_dir=data_dir, on_consumed=on_consumed,
                                                   **opts)
    for key in _SERVER_ONLY:
        if key in opts:
            raise TypeError(f"hyperdown.create: {key} is a server option (isServer is not set)")
    spk = _required(opts, "serverPublicKey", kind, "the server it trusts")
    connect = _required(opts, "connect", kind, "the server's address, or a list of them")
    handler = _required(opts, "eventHandler", kind, "what to do with each event")
    known = _keywords(Client) - {"on_event", "data_dir"}
    for key in opts:
        if key not in known:
            raise _unknown(key, known | _ORIGINAL | _CLIENT_ONLY, kind)
    return "client", (kp, spk, folder, connect), dict(
        data_dir=data_dir, on_event=wrap_event(handler, aio), **opts)
