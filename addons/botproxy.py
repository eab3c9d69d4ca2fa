"""Load botproxy's recorder into plain mitmproxy.

    mitmdump -s addons/botproxy.py \
        --mode reverse:http://127.0.0.1:3978@127.0.0.1:5055 --mode regular@127.0.0.1:5056 \
        --set botproxy_db=botproxy.db --set botproxy_session=my-session

botproxy must be importable by the Python that runs mitmdump (pip install botproxy in the same
environment); running from a checkout works too.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
# mitmproxy puts this script's folder first on sys.path (and leaves it there), where this very file
# would be found as `botproxy`, shadowing the package: look for the package everywhere else.
_PATH = sys.path[:]
sys.path[:] = [entry for entry in _PATH if os.path.abspath(entry or os.curdir) != _HERE]
try:
    try:
        import botproxy  # noqa: F401
    except ImportError:  # a checkout: the package beside this folder
        sys.path.insert(0, os.path.dirname(_HERE))
    from botproxy.mitmdump import MitmdumpRecorder
finally:
    sys.path[:] = _PATH  # the package is imported; its own imports no longer need the path

addons = [MitmdumpRecorder()]
