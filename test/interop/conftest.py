"""pytest fixtures of the interop tests; the helpers live in interop_util.py (a unique module
name, so that this suite runs in one session with bindings/python/tests)."""
from interop_util import ids, node_bin, procs, swift_cli  # noqa: F401 - fixtures
