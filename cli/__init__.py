"""The ``tango`` command line: thin click commands over the library in ``common``."""
