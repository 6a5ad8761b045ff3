"""Quantum ESPRESSO DFT-PT electron-phonon T_c workflow (inputs, runs, parsing, Makers)."""
