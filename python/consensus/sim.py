"""The deterministic simulator (placeholder until the Rust simulator is bound)."""
