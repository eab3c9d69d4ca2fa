"""Load botproxy's recorder into plain mitmproxy.

    mitmdump -s addons/botproxy.py \
        --mode reverse:http://127.0.0.1:3978@127.0.0.1:5055 --mode regular@127.0.0.1:5056 \
        --set botproxy_db=botproxy.db --set botproxy_session=my-session

botproxy must be importable by the Python that runs mitmdump (pip install botproxy in the same
environment); running from a checkout works too.
"""

import os
import sys

try:
    import botproxy  # noqa: F401
except ImportError:  # a checkout: make the package beside this folder importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from botproxy.mitm_addon import MitmdumpRecorder  # noqa: E402

addons = [MitmdumpRecorder()]
