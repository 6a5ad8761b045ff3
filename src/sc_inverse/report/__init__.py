"""Paper-style figures and markdown summary of an inverse-design run."""
