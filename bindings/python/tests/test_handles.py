"""Server and client over 127.0.0.1 (plain, thread-based API)."""
from __future__ import annotations

import logging
import threading

import pytest

import hyperdown
from hyperdown import _lib

from hd_testutil import ORIGINAL_KEYS, TIMEOUT, Recorder, addr, find_in


def test_handshake_each_side_sees_the_other(server_kp, user_kp, rec: Recorder, store) -> None:
    with hyperdown.Server(server_kp, "topic", "127.0.0.1:0",
                          on_peer_connected=rec.cb("server+"),
                          on_peer_disconnected=rec.cb("server-"), **store()) as server:
        assert server.port > 0
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server),
                              on_connected=rec.cb("client+"),
                              on_disconnected=rec.cb("client-"), **store()) as client:
            assert rec.wait("client+")[0] == (server_kp.public_key,)
            assert rec.wait("server+")[0] == (user_kp.public_key,)
            assert not client.closed
        assert client.closed
        # the client's close is seen by the server; both sides close in order
        ev = rec.wait("server-")[0]
        assert ev[0] == user_kp.public_key
        assert rec.wait("client-")[0][0] == server_kp.public_key
    # callbacks ran on the core's threads, never on this one
    assert threading.get_ident() not in rec.threads


def test_wrong_server_key_is_an_authentication_error_on_both_sides(server_kp, user_kp,
                                                                  rec: Recorder, store) -> None:
    wrong = hyperdown.KeyPair.from_scalar(*ORIGINAL_KEYS["offline"]).public_key
    with hyperdown.Server(server_kp, "topic", on_peer_connected=rec.cb("server+"),
                          on_peer_disconnected=rec.cb("server-"), **store()) as server:
        with hyperdown.Client(user_kp, wrong, "topic", addr(server), reconnect=False,
                              on_connected=rec.cb("client+"),
                              on_disconnected=rec.cb("client-"), **store()):
            client_ev = rec.wait("client-")[0]
            server_ev = rec.wait("server-")[0]
    pk, err = client_ev
    assert isinstance(err, hyperdown.AuthenticationError), err
    assert err.code == _lib.HD_EAUTH and err.name == "EAUTH" and err.message
    spk, serr = server_ev
    assert spk is None  # never authenticated
    assert isinstance(serr, hyperdown.AuthenticationError), serr
    assert not rec.of("client+") and not rec.of("server+")


def test_other_topic_fails_the_handshake(server_kp, user_kp, rec: Recorder, store) -> None:
    with hyperdown.Server(server_kp, "topic", on_peer_disconnected=rec.cb("server-"), **store()) as server:
        with hyperdown.Client(user_kp, server.public_key, "another topic", addr(server),
                              reconnect=False, on_connected=rec.cb("client+"),
                              on_disconnected=rec.cb("client-"), **store()):
            _, err = rec.wait("client-")[0]
            rec.wait("server-")
    assert isinstance(err, hyperdown.HyperdownError) and not rec.of("client+")
    assert isinstance(err, hyperdown.TopicMismatchError), err


def test_raising_callback_does_not_crash(server_kp, user_kp, rec: Recorder, caplog, store) -> None:
    def boom(*args: object) -> None:
        rec.cb("boom")(*args)
        raise RuntimeError("callback failure on purpose")

    errors: list = []
    caplog.set_level(logging.ERROR, logger="hyperdown")
    with hyperdown.Server(server_kp, "topic", on_peer_connected=boom,
                          on_peer_disconnected=boom, **store()) as server:
        # default handler: logged on the "hyperdown" logger
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server),
                              on_connected=boom, on_callback_error=errors.append, **store()) as client:
            rec.wait("boom", 2)
            # the connection survives: a second client still gets in
            other = hyperdown.KeyPair.generate()
            with hyperdown.Client(other, server.public_key, "topic", addr(server),
                                  on_connected=rec.cb("second+"), **store()):
                rec.wait("second+")
            assert not client.closed
    assert any("callback failure on purpose" in r.getMessage() or
               (r.exc_info and "on purpose" in str(r.exc_info[1])) for r in caplog.records)
    assert errors and isinstance(errors[0], RuntimeError)


def test_close_is_idempotent_and_closed_handles_refuse(server_kp, store) -> None:
    server = hyperdown.Server(server_kp, "topic", **store())
    server.close()
    server.close()
    assert server.closed


def test_create_errors(server_kp, user_kp, store) -> None:
    with pytest.raises(hyperdown.InvalidAddressError):
        hyperdown.Server(server_kp, "topic", "not an address", **store())
    with hyperdown.Server(server_kp, "topic", **store()) as server:
        with pytest.raises(hyperdown.AddressInUseError):
            hyperdown.Server(server_kp, "topic", addr(server), **store())
    with pytest.raises(hyperdown.InvalidKeyError):
        hyperdown.Client(user_kp, bytes(32), "topic", "127.0.0.1:1", **store())


def test_refused_connection_is_reported(user_kp, server_kp, rec: Recorder, store) -> None:
    # a port nobody listens on: open then close a server to get one
    with hyperdown.Server(server_kp, "topic", **store()) as s:
        port = s.port
    with hyperdown.Client(user_kp, server_kp.public_key, "topic", f"127.0.0.1:{port}",
                          reconnect=False, on_disconnected=rec.cb("client-"), **store()):
        _, err = rec.wait("client-")[0]
    assert isinstance(err, hyperdown.ConnectRefusedError), err


def test_close_from_inside_a_callback(server_kp, user_kp, rec: Recorder, store) -> None:
    holder: dict = {}

    def on_connected(pk: bytes) -> None:
        holder["client"].close()  # on the loop thread: starts the close, does not deadlock
        rec.cb("closed-inside")(pk)

    with hyperdown.Server(server_kp, "topic", on_peer_disconnected=rec.cb("server-"), **store()) as server:
        holder["client"] = hyperdown.Client(user_kp, server.public_key, "topic", addr(server),
                                            on_connected=on_connected, **store())
        rec.wait("closed-inside")
        rec.wait("server-", timeout=TIMEOUT)
    assert holder["client"].closed
