# The compiled cffi module (API mode), generated from include/hyperdown.h at build time.
from typing import Any

ffi: Any
lib: Any
