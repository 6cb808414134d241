//! Alignment of reference/moving pairs. So far: the classical baseline the network is compared
//! with (`phase`).
pub mod phase;
