"""Named model files: the registry (a data file) and the store that fetches, verifies and resolves them."""
