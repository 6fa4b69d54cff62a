"""Drop-in replacements for other libraries' APIs, computed by fastdis."""
