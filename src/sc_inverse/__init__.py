"""sc-inverse: inverse design of conventional superconductors as an atomate2/jobflow extension."""

__version__ = "0.1.0"
