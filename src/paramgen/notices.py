"""paramgen's own warnings: something the user should know about what was generated.

They are ordinary `UserWarning`s to Python (filters and `pytest.warns` see them as usual); the
command line prints each as one line of the command, ``paramgen sample: warning: ...``.
"""


class ParamgenWarning(UserWarning):
    """A warning raised by paramgen (not by a library it uses)."""
