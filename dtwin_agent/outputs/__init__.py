"""What people get: ``files`` (written atomically), ``overlay`` (numbered objects), ``answer`` (the text)."""
