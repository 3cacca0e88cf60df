"""What people get: files written atomically, overlays with numbered objects, the answer text."""
