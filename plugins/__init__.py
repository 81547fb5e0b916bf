"""lmforge's built-in components. Each module is a plugin registered through the
``lmforge`` entry-point group, exactly as a third-party plugin would be."""
