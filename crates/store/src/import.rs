//! Import of Hermes Agent stores (being written).
