"""What the core tells about a server store that lost its last commits (docs/RELIABILITY.md,
"Restores and rollbacks"): ``Event.possibly_repeated`` and ``rollback_stats()``."""
from __future__ import annotations

import os
import shutil
import threading
from typing import List, Tuple

import pytest

import hyperdown
from hyperdown import _ffi, _lib

from hd_testutil import addr, wait_until

ZERO = (0, 0, 0, 0, 0)


def counters(st: hyperdown.RollbackStats) -> Tuple[int, ...]:
    return (st.rollbacks, st.epoch_resumes, st.events_repeated, st.events_orphaned,
            st.consumed_dropped)


def recorder() -> Tuple[List[Tuple[object, bool]], object]:
    seen: List[Tuple[object, bool]] = []
    lock = threading.Lock()

    def on_event(ev: hyperdown.Event) -> bool:
        with lock:
            seen.append((ev.payload, ev.possibly_repeated))
        return True
    return seen, on_event


def test_fresh_pair_nothing_rolled_back(server_kp, user_kp, tmp_path) -> None:
    seen, on_event = recorder()
    with hyperdown.Server(server_kp, "topic", data_dir=str(tmp_path / "s")) as server:
        ss = server.rollback_stats()
        assert len(ss.epoch) == 16 and ss.epoch != bytes(16)  # a server store always has one
        assert counters(ss) == ZERO
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server), on_event=on_event,
                              data_dir=str(tmp_path / "c")) as client:
            assert counters(client.rollback_stats()) == ZERO
            server.add_event(user_kp.public_key, "one")
            wait_until(lambda: len(seen) == 1, what="the event")
            assert seen == [("one", False)]
            cs = client.rollback_stats()
            # the first resume learns the store's epoch (an epoch resume), no rollback
            assert counters(cs) == (0, cs.epoch_resumes, 0, 0, 0) and cs.epoch == ss.epoch
            assert server.rollback_stats().rollbacks == 0
        with pytest.raises(hyperdown.HyperdownError):
            client.rollback_stats()


def test_restored_backup_hands_the_lost_event_again_marked(server_kp, user_kp, tmp_path) -> None:
    sdir, image, cdir = tmp_path / "s", tmp_path / "image", tmp_path / "c"
    seen, on_event = recorder()

    def server() -> hyperdown.Server:
        return hyperdown.Server(server_kp, "topic", data_dir=str(sdir))

    def client(srv: hyperdown.Server) -> hyperdown.Client:
        return hyperdown.Client(user_kp, srv.public_key, "topic", addr(srv), on_event=on_event,
                                data_dir=str(cdir), reconnect_min=0.01, reconnect_max=0.05)

    with server() as srv:
        srv.add_event(user_kp.public_key, "old#1")
    os.mkdir(image)
    rc = _lib.hd_server_backup_folder(str(sdir).encode(), str(image / "hyperdown.db").encode())
    assert rc == 0, _ffi.string(_lib.hd_last_error_message()).decode()
    with server() as srv:
        srv.add_event(user_kp.public_key, "old#2")
        with client(srv) as cli:
            wait_until(lambda: len(seen) == 2 and srv.pending(user_kp.public_key) == 0
                       and cli.stats().consumed == 0, what="both events handled and confirmed")
    shutil.rmtree(sdir)
    os.rename(image, sdir)
    seen.clear()
    with server() as srv:
        assert srv.add_event(user_kp.public_key, "new#2") == 2  # the number old#2 had
        with client(srv) as cli:
            wait_until(lambda: len(seen) == 2 and srv.pending(user_kp.public_key) == 0,
                       what="old#1 again and new#2")
            assert seen == [("old#1", True), ("new#2", False)]
            ss, cs = srv.rollback_stats(), cli.rollback_stats()
            assert counters(ss) == (1, 1, 0, 0, 0)
            assert counters(cs) == (1, 1, 1, 0, 0)
            assert cs.epoch == ss.epoch
