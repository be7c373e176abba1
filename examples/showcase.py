"""Placeholder showcase; replaced below."""
