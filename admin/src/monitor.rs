//! Monitor (later).
