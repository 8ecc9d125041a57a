"""The carrier's label-buying HTTP API: the stand-in server (``stub``) that development and tests run."""
