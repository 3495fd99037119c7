"""pytest fixtures; the helpers live in hd_testutil.py (a unique module name, so that this suite
runs in one pytest session with test/interop, which has a conftest.py of its own)."""
from hd_testutil import rec, server_kp, store, user_kp  # noqa: F401 - fixtures
