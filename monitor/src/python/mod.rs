//! What premain knows of Python: recognising CPython executables, package build hooks, and
//! which installed distribution a file belongs to.

pub(crate) mod dist;
pub(crate) mod install;
pub mod interpreter;
pub(crate) mod layout;
pub(crate) mod stack;
