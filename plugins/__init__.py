"""lrbench's built-in plugins, written only against the public API, as a third party would."""
