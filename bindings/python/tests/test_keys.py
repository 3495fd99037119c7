from __future__ import annotations

import os
import re

import pytest

import hyperdown
from hyperdown import _ffi, _lib

from hd_testutil import HEADER, ORIGINAL_KEYS


@pytest.mark.parametrize("name", sorted(ORIGINAL_KEYS))
def test_original_keypear_pairs_load(name: str) -> None:
    scalar, public = ORIGINAL_KEYS[name]
    kp = hyperdown.KeyPair.from_scalar(scalar, public)
    assert kp.public_key == bytes.fromhex(public)
    assert kp.public_key_hex == public
    assert kp.scalar == bytes.fromhex(scalar)
    # bytes and upper-case hex are accepted too
    assert hyperdown.KeyPair.from_scalar(bytes.fromhex(scalar), public.upper()) == kp


def test_mismatched_pair_raises_invalid_key_with_core_message() -> None:
    scalar = ORIGINAL_KEYS["server"][0]
    other_public = ORIGINAL_KEYS["online"][1]
    with pytest.raises(hyperdown.InvalidKeyError) as info:
        hyperdown.KeyPair.from_scalar(scalar, other_public)
    err = info.value
    assert isinstance(err, hyperdown.HyperdownError) and isinstance(err, ValueError)
    assert err.code == _lib.HD_EKEY == -5 and err.name == "EKEY"
    # the very message the core gives for this failure
    out = _ffi.new("hd_keypair_t *")
    assert _lib.hd_keypair_from_scalar(out, bytes.fromhex(scalar), bytes.fromhex(other_public)) == -5
    core_message = _ffi.string(_lib.hd_last_error_message()).decode()
    assert core_message and err.message == core_message
    assert core_message in str(err)


def test_seed_and_secret_key_forms_agree() -> None:
    seed = bytes(range(32))
    kp = hyperdown.KeyPair.from_seed(seed)
    assert hyperdown.KeyPair.from_seed(seed.hex()) == kp
    assert hyperdown.KeyPair.from_secret_key(seed + kp.public_key) == kp
    assert hyperdown.KeyPair.from_scalar(kp.scalar, kp.public_key) == kp
    with pytest.raises(hyperdown.InvalidKeyError):
        hyperdown.KeyPair.from_secret_key(seed + bytes(32))


def test_generate_is_random_and_valid() -> None:
    a, b = hyperdown.KeyPair.generate(), hyperdown.KeyPair.generate()
    assert a != b and len(a.public_key) == hyperdown.PUBLICKEY_BYTES
    assert hyperdown.check_public_key(a.public_key) == a.public_key
    assert a.scalar.hex() not in repr(a)


def test_bad_inputs() -> None:
    with pytest.raises(hyperdown.InvalidHexError) as info:
        hyperdown.KeyPair.from_seed("zz" * 32)
    assert info.value.code == _lib.HD_EHEX
    with pytest.raises(hyperdown.InvalidHexError):
        hyperdown.KeyPair.from_seed("ab" * 31)
    with pytest.raises(hyperdown.InvalidArgumentError):
        hyperdown.KeyPair.from_seed(b"short")
    with pytest.raises(hyperdown.InvalidKeyError):
        hyperdown.check_public_key(bytes(32))  # small order point


def test_hex_round_trip() -> None:
    data = bytes(range(256))
    text = hyperdown.hex_encode(data)
    assert text == data.hex()
    assert hyperdown.hex_decode(text.upper(), 256) == data


def test_topic_key() -> None:
    t = hyperdown.topic_key("topic")
    assert len(t) == hyperdown.TOPIC_BYTES == 32
    assert t == hyperdown.topic_key(b"topic")
    assert t != hyperdown.topic_key("topic2")


def _header() -> str:
    if not os.path.isfile(HEADER):
        pytest.skip("not in a checkout: include/hyperdown.h not found")
    with open(HEADER, encoding="utf-8") as f:
        return f.read()


def test_versions_match_header() -> None:
    text = _header()
    want = re.search(r'#define HD_VERSION_STRING "([^"]+)"', text).group(1)  # type: ignore[union-attr]
    assert hyperdown.version() == want
    major, minor, patch = (int(x) for x in want.split("."))
    assert hyperdown.version_hex() == (major << 16) | (minor << 8) | patch
    assert hyperdown.abi_version() == _lib.HD_ABI_VERSION
    assert hyperdown.PROTOCOL_VERSION == _lib.HD_PROTOCOL_VERSION


def test_every_header_error_has_a_named_exception() -> None:
    entries = re.findall(r'XX\((\w+),\s*(-\d+),\s*"([^"]*)"\)', _header())
    assert entries
    assert hyperdown.error_codes() == {name: int(v) for name, v, _ in entries}
    for name, value, text in entries:
        err = hyperdown.error_from_code(int(value))
        assert type(err) is not hyperdown.HyperdownError, f"no subclass for {name}"
        assert (err.code, err.name, err.message) == (int(value), name, text)
    unknown = hyperdown.error_from_code(-999)
    assert type(unknown) is hyperdown.HyperdownError and unknown.name == "UNKNOWN"


def test_error_names() -> None:
    assert hyperdown.error_from_code(_lib.HD_EAUTH).__class__ is hyperdown.AuthenticationError
    assert hyperdown.error_from_code(_lib.HD_ETOPIC).__class__ is hyperdown.TopicMismatchError
    assert hyperdown.error_from_code(_lib.HD_EKEY).__class__ is hyperdown.InvalidKeyError
    assert hyperdown.error_from_code(_lib.HD_ELIMIT).__class__ is hyperdown.LimitError
    assert _lib.HD_ELIMIT == -30
