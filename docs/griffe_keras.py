"""Griffe extension: show Keras' `Call arguments:` docstring section as parameters.

Keras and keras-hub document the arguments of `call()` in the class docstring under
`Call arguments:`. That is not a Google-style section name, so griffe would render it
as an unparsed note. Before parsing, the heading is rewritten to the Google form
`Other parameters: Call arguments:` (section kind, then title), so the entries are
parsed like `Args:` and listed under "Call arguments:". Only the built site changes;
the sources keep the Keras wording.
"""

import re

import griffe

_CALL_ARGUMENTS = re.compile(r"^(\s*)Call arguments:[ \t]*$", re.MULTILINE)


class KerasCallArguments(griffe.Extension):
    def on_class_instance(self, *, cls, **kwargs):
        if cls.docstring is not None:
            cls.docstring.value = _CALL_ARGUMENTS.sub(
                r"\1Other parameters: Call arguments:", cls.docstring.value
            )
