"""The encoding window: how many texts an encoder tokenizes, sorts by length and batches together.

A text's vector depends only on the window it falls in, so a corpus encoded whole, in chunks of whole
windows, or in shards of whole windows gives the same vectors, bit for bit.
"""

ENCODE_WINDOW = 1024
