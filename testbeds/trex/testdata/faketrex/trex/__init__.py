"""A stand-in for TRex's Python client package (see stl/api.py)."""
