//! bindings (to be written)
