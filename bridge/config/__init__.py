"""Settings: frozen, validated dataclasses per concern, and the TOML loader."""
