"""The demo: embedded two-hop data, the shipped tiny reader and its recipe, the reading check,
the pseudo-word and word-level tokenizer helpers the tests also use, and `gumbel-rerank demo`.

It sits on top of the library and nothing in the library imports it."""
