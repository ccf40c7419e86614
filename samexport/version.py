"""The package version, in one place (the facade and the package metadata writers read it)."""

__version__ = "0.1.0"
