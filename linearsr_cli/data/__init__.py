"""Data the project fetches for itself: the training photos from Debian packages (photos.py)."""
