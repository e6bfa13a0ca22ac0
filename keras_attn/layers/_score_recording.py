"""Scoped recording of attention scores, the hook behind `keras_attn.inspect`.

`MultiHeadAttention` asks `recorder_for(self)` on every call. Outside a
`recording_scores` block the answer is None and the call is exactly the normal one
(fused kernel included). Inside, the layers named in the block compute their scores
with the math path and hand them to the recorder. The state is a context variable,
so it is per thread, never global, and always restored on exit.
"""

import contextlib
import contextvars

_RECORDERS = contextvars.ContextVar("keras_attn_score_recorders", default=None)


@contextlib.contextmanager
def recording_scores(recorders):
    """Within the block, layer `L` calls `recorders[id(L)](scores)` on each call."""
    token = _RECORDERS.set(dict(recorders))
    try:
        yield
    finally:
        _RECORDERS.reset(token)


def recorder_for(layer):
    """The function that takes `layer`'s scores in this block, or None."""
    recorders = _RECORDERS.get()
    return None if recorders is None else recorders.get(id(layer))
