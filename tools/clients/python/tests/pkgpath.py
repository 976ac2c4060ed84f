"""Where the tests import fjord_client from.

By default the source tree (tools/clients/python), put first on sys.path. With
FJORD_TEST_INSTALLED=1 the installed package (pip install tools/clients/python) instead: nothing is
added, and importing must not find the source tree (run the tests from another directory, e.g.
`cd /tmp && python -m unittest discover -s .../tests`), which `check()` enforces.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_ROOT = os.path.abspath(os.path.join(HERE, ".."))
INSTALLED = os.environ.get("FJORD_TEST_INSTALLED") == "1"
# The working directory for `python -m fjord_client` subprocesses: -m puts it first on sys.path.
SUBPROCESS_CWD = HERE if INSTALLED else SRC_ROOT

if not INSTALLED and SRC_ROOT not in sys.path:
    sys.path.insert(0, SRC_ROOT)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def check():
    """Raise if FJORD_TEST_INSTALLED=1 but fjord_client comes from the source tree."""
    import fjord_client
    where = os.path.abspath(fjord_client.__file__)
    if INSTALLED and where.startswith(SRC_ROOT + os.sep):
        raise RuntimeError("FJORD_TEST_INSTALLED=1 but fjord_client was imported from the source tree (%s); "
                           "run the tests from another directory" % where)


check()
