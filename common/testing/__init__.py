"""What tests, benchmarks and the demo share to run tango for real on one machine: the local cluster
launcher (``cluster``), the worker-kill scenario (``chaos``) and tiny models built on the spot (``tiny``).

Rule: the library (``common``'s other rooms, the tier workers) never imports this package.
"""
