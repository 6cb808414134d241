//! Small shared helpers: atomic files and directories, output ownership and locking, signal
//! handling, input fingerprints.
pub mod atomic;
pub mod fingerprint;
pub mod interrupt;
pub mod output;
pub mod shard;
pub mod table;
pub mod text;
pub mod thumbs;
