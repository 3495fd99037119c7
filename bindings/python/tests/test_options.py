"""hyperdown.create / hyperdown.aio.create: unknown options and missing required ones are
TypeErrors that name them (as in Node and Swift), for both roles and both APIs."""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict

import pytest

import hyperdown
import hyperdown.aio
from hd_testutil import ORIGINAL_KEYS, original_options

SERVER_PK = ORIGINAL_KEYS["server"][1]


def server_options(**extra: Any) -> Dict[str, Any]:
    opts = {"uniqueKeyPair": original_options("server"), "folderName": "topic",
            "isServer": True, "onClientConsumedEvents": lambda user, events, cb: cb(True)}
    opts.update(extra)
    return opts


def client_options(**extra: Any) -> Dict[str, Any]:
    opts = {"uniqueKeyPair": original_options("online"), "folderName": "topic",
            "serverPublicKey": SERVER_PK, "connect": "127.0.0.1:1",
            "eventHandler": lambda id, data, cb: cb(id, True)}  # noqa: A002
    opts.update(extra)
    return opts


def creators() -> Dict[str, Callable[[Dict[str, Any]], Any]]:
    def aio_create(options: Dict[str, Any]) -> Any:
        async def main() -> Any:
            return await hyperdown.aio.create(options)
        return asyncio.run(main())
    return {"plain": hyperdown.create, "aio": aio_create}


@pytest.mark.parametrize("api", ["plain", "aio"])
def test_unknown_option_is_an_error(api: str, tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    create = creators()[api]
    with pytest.raises(TypeError, match=r"unknown option 'lisen'.*did you mean 'listen'"):
        create(server_options(lisen="127.0.0.1:7000"))
    with pytest.raises(TypeError, match=r"unknown option 'eventhandler'"):
        create(client_options(eventhandler=lambda e: True))
    with pytest.raises(TypeError, match=r"unknown option '_on_event_raw'"):
        create(client_options(_on_event_raw=lambda e: True))  # private keywords stay private
    with pytest.raises(TypeError, match="serverPublicKey is a client option"):
        create(server_options(serverPublicKey=SERVER_PK))
    with pytest.raises(TypeError, match="listen is a server option"):
        create(client_options(listen="127.0.0.1:0"))
    assert not list(tmp_path.iterdir()), "a refused create made no folder"


@pytest.mark.parametrize("api", ["plain", "aio"])
@pytest.mark.parametrize("role,key", [
    ("server", "uniqueKeyPair"), ("server", "folderName"), ("server", "onClientConsumedEvents"),
    ("client", "uniqueKeyPair"), ("client", "folderName"), ("client", "eventHandler"),
    ("client", "serverPublicKey"), ("client", "connect")])
def test_missing_required_option_is_an_error(api: str, role: str, key: str, tmp_path: Any,
                                              monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    opts = server_options() if role == "server" else client_options()
    del opts[key]
    with pytest.raises(TypeError, match=rf"a {role} needs option {key}\b"):
        creators()[api](opts)


def test_known_python_options_pass_through(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    server = hyperdown.create(server_options(listen="localhost:0", default_ttl=60.0))
    try:
        assert server.port > 0
    finally:
        server.close()


def test_client_lists_are_checked() -> None:
    kp = hyperdown.KeyPair.generate()
    with pytest.raises(ValueError, match="non-empty list of keys"):
        hyperdown.Client(kp, [], "t", "127.0.0.1:1", data_dir="unused")
    with pytest.raises(ValueError, match="non-empty list of addresses"):
        hyperdown.Client(kp, SERVER_PK, "t", [], data_dir="unused")
    with pytest.raises(hyperdown.HyperdownError):
        hyperdown.Client(kp, [SERVER_PK, "00" * 31 + "zz"], "t", "127.0.0.1:1", data_dir="unused")
