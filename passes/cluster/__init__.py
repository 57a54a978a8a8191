"""Weight clustering (weight sharing) with Huffman-coded size; importing this package registers ``cluster``."""

from passes.cluster import cluster  # noqa: F401
