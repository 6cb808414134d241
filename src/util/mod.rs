//! Small shared helpers: atomic files and directories, input fingerprints.
pub mod atomic;
pub mod fingerprint;
pub mod table;
pub mod text;
pub mod thumbs;
