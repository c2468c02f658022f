"""`python -m mlstack.cli`, as the `mlstack` console script."""

from mlstack.cli import app

if __name__ == "__main__":
    app()
