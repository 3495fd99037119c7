"""setuptools needs setup.py only for what pyproject.toml cannot say: `cffi_modules` (cffi's
setuptools keyword) and an sdist that carries the C core with it (see README.md)."""
import os
import shutil

from setuptools import setup
from setuptools.command.sdist import sdist as _sdist

HERE = os.path.dirname(os.path.abspath(__file__))


class sdist(_sdist):
    """Copies the core (include/hyperdown.h, CSources/) into the sdist's _core/, so that an sdist
    (or `python -m build`, which builds the wheel from the sdist) compiles without the checkout."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        src = None
        if os.environ.get("HYPERDOWN_SOURCE_DIR"):
            src = os.environ["HYPERDOWN_SOURCE_DIR"]
        else:
            for cand in (os.path.join(HERE, "_core"), os.path.dirname(os.path.dirname(HERE))):
                if os.path.isfile(os.path.join(cand, "include", "hyperdown.h")):
                    src = cand
                    break
        if src is None:
            raise SystemExit("sdist: the C core (include/hyperdown.h, CSources/) was not found")
        dest = os.path.join(base_dir, "_core")
        os.makedirs(os.path.join(dest, "include"), exist_ok=True)
        shutil.copy2(os.path.join(src, "include", "hyperdown.h"), os.path.join(dest, "include"))
        shutil.copytree(os.path.join(src, "CSources"), os.path.join(dest, "CSources"),
                        ignore=shutil.ignore_patterns("*.o"), dirs_exist_ok=True)


# build_ext force: pip builds in-tree and setuptools would otherwise reuse build/ from an earlier
# build with another core or another HYPERDOWN_LINK mode (it compares file dates only).
setup(cffi_modules=["hyperdown_build.py:ffibuilder"], cmdclass={"sdist": sdist},
      options={"build_ext": {"force": True}})
