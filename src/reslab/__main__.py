"""``python -m reslab`` runs the command line (also what torchrun starts)."""

from reslab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
