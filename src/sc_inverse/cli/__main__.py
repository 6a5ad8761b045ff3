"""``python -m sc_inverse.cli``: the same as the ``sc-inverse`` console script."""

from sc_inverse.cli import main

main()
