"""Text data: tokenization, vocabularies and the DataModules built on them."""
