"""``tango demo``: an application of the library, not part of it.

It builds a small/big pair from the packaged MiniLM backbone (``pipeline``),
labels a corpus in-process or through a local cluster (``cluster``), and
reports the cascade's trade (``command``).
"""
