"""OpenPGP: the python-gnupg wrapper and the newsroom keys."""
