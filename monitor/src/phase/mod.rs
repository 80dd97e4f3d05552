//! The phase engine: which phase of the interpreter's life each action belongs to, and which
//! file is responsible.

mod engine;

pub use engine::*;
