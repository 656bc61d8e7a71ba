"""The ShapesWorld demo: a tiny synthetic world, its tokenizer and its training data."""
