"""Problem families and experiments built on the estimators (one file per family)."""
