"""Import TensorFlow without its start-up chatter, so users see our output rather than its noise.

TensorFlow 2.21 writes absl log lines (oneDNN, CUDA stubs) to file descriptor 2 while its shared libraries load,
before `TF_CPP_MIN_LOG_LEVEL` is read. We point descriptor 2 at a temporary file during the import and replay
what was captured only if the import fails. Import this module before `keras` or `tensorflow`.
"""

from __future__ import annotations

import os
import sys
import tempfile

# Level 3 also hides the C++ "errors" TensorFlow logs on a machine without CUDA (failed cuInit and the like);
# real failures still arrive as Python exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_import_quietly()
