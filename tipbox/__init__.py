"""tipbox: anonymous tip submission for newsrooms, storing OpenPGP ciphertext only."""

__version__ = "0.1.0"
