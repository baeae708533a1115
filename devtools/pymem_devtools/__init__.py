"""pymem's development tools: throw-away clusters, the Citus builder, the test models,
the demo, the benchmarks and the SQL release tools.

A distribution of its own (``pymem-store-devtools``), built from the same repository
as the product and never needed at run time: nothing in ``pymem`` imports it.
"""

__version__ = "0.1.0"
