"""lienthong's core: the edXML contract, admission, and the node written against ports.

Nothing in this package performs network or database I/O; adapters/ does.
"""

__version__ = "0.1.0"
