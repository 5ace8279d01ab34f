"""Detection-quality measurement on datasets in the evaluation layout."""
