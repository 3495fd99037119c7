"""``hyperdown.create(options)``: the original's option names (see docs/python.md).

Option              meaning
------------------  -----------------------------------------------------------------------------
uniqueKeyPair       a KeyPair, or a dict: ``{"publicKey", "scalar"}`` (keypear), ``{"publicKey",
                    "secretKey"}`` (libsodium's 64 bytes) or ``{"seed"}``; values bytes or hex
folderName          the topic, and the storage folder (relative to the current directory)
testFolder          an inner folder of folderName for the storage (several peers in one script)
isServer            True for a server
serverPublicKey     a client's server (bytes or hex)
onClientConsumedEvents(remotePublicKey, events, cb)   the server's callback; ``cb(ok)``
eventHandler(id, data, cb)                            the client's handler; ``cb(id, ok)``
offline             accepted and ignored (a client is always able to start offline)
listen              the server's address (default "127.0.0.1:0")
connect             the client's server address (required for a client)
data_dir            overrides folderName[/testFolder] as the storage folder

Any other key is passed to hyperdown.Server / hyperdown.Client as a keyword argument.
The callbacks may also use the Python forms: ``onClientConsumedEvents(user, events)`` and
``eventHandler(id, data)`` returning a result, or ``eventHandler(event)``.
"""
from __future__ import annotations

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
    if _arity(fn) < 3:
        return fn  # (user, events) -> result

    def handler(user: bytes, batch: Any) -> Any:
        def cb(ok: Any = True) -> _Done:
            if not batch.completed:
                batch.complete(bool(ok))
            return _DONE
        return _after(fn(user, batch, cb))
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


def resolve(options: Dict[str, Any], aio: bool) -> Tuple[str, Tuple[Any, ...], Dict[str, Any]]:
    """(kind, args, kwargs) for Server/Client from the original's options."""
    opts = dict(options)
    try:
        kp = keypair_from(opts.pop("uniqueKeyPair"))
        folder = opts.pop("folderName")
    except KeyError as exc:
        raise TypeError(f"hyperdown.create: option {exc.args[0]} is required") from None
    if not isinstance(folder, str) or not folder:
        raise TypeError("folderName must be a non-empty string")
    test_folder = opts.pop("testFolder", None)
    is_server = bool(opts.pop("isServer", False))
    opts.pop("offline", None)
    data_dir = opts.pop("data_dir", None)
    if data_dir is None:
        data_dir = os.path.join(os.getcwd(), folder, *([test_folder] if test_folder else []))
    if is_server:
        for key in ("serverPublicKey", "eventHandler", "connect"):
            if key in opts:
                raise TypeError(f"hyperdown.create: {key} is a client option (isServer is set)")
        on_consumed = wrap_consumed(opts.pop("onClientConsumedEvents", None), aio)
        listen = opts.pop("listen", "127.0.0.1:0")
        return "server", (kp, folder, listen), dict(data_dir=data_dir, on_consumed=on_consumed,
                                                   **opts)
    for key in ("onClientConsumedEvents", "listen"):
        if key in opts:
            raise TypeError(f"hyperdown.create: {key} is a server option (isServer is not set)")
    try:
        spk = opts.pop("serverPublicKey")
        connect = opts.pop("connect")
    except KeyError as exc:
        raise TypeError(f"hyperdown.create: a client needs option {exc.args[0]}") from None
    handler = opts.pop("eventHandler", None)
    if handler is None and not aio:
        raise TypeError("hyperdown.create: a client needs option eventHandler")
    # aio without eventHandler: iterate with `async for event in client.events()`
    return "client", (kp, spk, folder, connect), dict(
        data_dir=data_dir, on_event=wrap_event(handler, aio) if handler else None, **opts)
