"""Stand-ins for third-party modules that cannot be installed here (see :mod:`dtwin_agent._compat.stubs`)."""
