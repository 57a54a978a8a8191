"""Weight clustering (weight sharing) with Huffman-coded size: the ``cluster`` pass."""
