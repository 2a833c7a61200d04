"""`python -m edgedml.cli` is the `edgedml` command (torchrun runs training this way)."""

from . import main

if __name__ == "__main__":
    main()
