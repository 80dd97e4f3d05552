//! What premain knows of Python: recognising CPython executables, package build hooks, and
//! which installed distribution a file belongs to.

pub mod dist;
pub mod install;
pub mod interpreter;
