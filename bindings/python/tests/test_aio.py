"""The asyncio API (hyperdown.aio); each test runs its own loop with asyncio.run."""
from __future__ import annotations

import asyncio

import pytest

import hyperdown
import hyperdown.aio
from hyperdown import _lib

from hd_testutil import ORIGINAL_KEYS, TIMEOUT


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT * 3))


def test_async_handshake(server_kp, user_kp, store) -> None:
    async def main() -> None:
        seen: list = []
        loop = asyncio.get_running_loop()

        async def on_peer(pk: bytes) -> None:  # coroutine callbacks run on the event loop
            seen.append((pk, asyncio.get_running_loop() is loop))

        async with hyperdown.aio.Server(server_kp, "topic", on_peer_connected=on_peer, **store()) as server:
            async with hyperdown.aio.Client(user_kp, server.public_key, "topic",
                                            f"127.0.0.1:{server.port}", **store()) as client:
                assert await client.connected(timeout=TIMEOUT) == server_kp.public_key
                assert client.is_connected
                assert await server.peer_connected(timeout=TIMEOUT) == user_kp.public_key
                assert server.peers == {user_kp.public_key}
            assert client.closed
            pk, err = await server.peer_disconnected(timeout=TIMEOUT)
            assert pk == user_kp.public_key
            await asyncio.sleep(0)
            assert seen == [(user_kp.public_key, True)]
        assert server.closed

    run(main())


def test_async_wrong_server_key(server_kp, user_kp, store) -> None:
    wrong = hyperdown.KeyPair.from_scalar(*ORIGINAL_KEYS["offline"]).public_key

    async def main() -> None:
        async with hyperdown.aio.Server(server_kp, "topic", **store()) as server:
            async with hyperdown.aio.Client(user_kp, wrong, "topic", f"127.0.0.1:{server.port}",
                                            reconnect=False, **store()) as client:
                _, err = await client.disconnected(timeout=TIMEOUT)
                assert isinstance(err, hyperdown.AuthenticationError)
                assert err.code == _lib.HD_EAUTH
                spk, serr = await server.peer_disconnected(timeout=TIMEOUT)
                assert spk is None and isinstance(serr, hyperdown.AuthenticationError)
                with pytest.raises(asyncio.TimeoutError):
                    await client.connected(timeout=0.2)

    run(main())


def test_async_raising_callback_goes_to_the_loop_handler(server_kp, user_kp, store) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        caught: list = []
        loop.set_exception_handler(lambda _loop, ctx: caught.append(ctx.get("exception")))

        def boom(pk: bytes) -> None:
            raise RuntimeError("async callback failure on purpose")

        async with hyperdown.aio.Server(server_kp, "topic", on_peer_connected=boom, **store()) as server:
            async with hyperdown.aio.Client(user_kp, server.public_key, "topic",
                                            f"127.0.0.1:{server.port}", **store()) as client:
                await server.peer_connected(timeout=TIMEOUT)
                await client.connected(timeout=TIMEOUT)
                await asyncio.sleep(0)
        assert any(isinstance(e, RuntimeError) for e in caught)

    run(main())
