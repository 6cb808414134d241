//! `simreg batch` (not yet written).
