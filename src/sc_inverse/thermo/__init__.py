"""Thermodynamic stability: formation energy and energy above the convex hull (QE energies)."""
