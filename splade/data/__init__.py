"""Data: BEIR loading, training triplets, Korean tokenization, BM25 and the training-set builder."""
