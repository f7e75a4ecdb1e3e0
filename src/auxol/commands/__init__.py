"""The sub-commands of the ``auxol`` command line, one module each (see :mod:`auxol.cli`)."""
