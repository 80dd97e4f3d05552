//! `credential-read`: an open for reading of a file in the credential catalogue.

use std::path::Path;

use globset::GlobSet;

use super::{
    catalogue::{CREDENTIALS, NOT_CREDENTIALS},
    glob_set,
};
use crate::ops::config::Credentials as Options;

/// The catalogue in force: built-in entries (unless replaced) and configured ones, less the
/// exclusions.
pub(super) struct Catalogue {
    patterns: Vec<String>,
    globs: GlobSet,
    categories: Vec<String>,
    excluded: GlobSet,
}

impl Catalogue {
    pub(super) fn compile(options: &Options) -> Result<Self, String> {
        let mut entries: Vec<(String, String)> = Vec::new();
        if !options.replace_defaults {
            entries.extend(CREDENTIALS.iter().map(|(c, g)| ((*c).to_owned(), (*g).to_owned())));
        }
        entries.extend(options.paths.iter().map(|p| (p.category.clone(), p.glob.get_ref().clone())));
        let exclude: Vec<String> = NOT_CREDENTIALS
            .iter()
            .map(|g| (*g).to_owned())
            .chain(options.exclude.iter().map(|g| g.get_ref().clone()))
            .collect();
        Ok(Self {
            globs: glob_set(entries.iter().map(|(_, g)| g.as_str()))?,
            patterns: entries.iter().map(|(_, g)| g.clone()).collect(),
            categories: entries.into_iter().map(|(c, _)| c).collect(),
            excluded: glob_set(exclude.iter().map(String::as_str))?,
        })
    }

    /// The entries' globs.
    pub(super) fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(String::as_str)
    }

    /// The catalogue entry `path` belongs to.
    pub(super) fn category(&self, path: &Path) -> Option<&str> {
        if self.excluded.is_match(path) {
            return None;
        }
        let first = *self.globs.matches(path).first()?;
        Some(self.categories[first].as_str())
    }

    /// An open with `flags` of `path`: the catalogue entry, when it is a credential read.
    pub(super) fn read(&self, path: &Path, flags: u32) -> Option<&str> {
        const O_ACCMODE: u32 = 3;
        const O_WRONLY: u32 = 1;
        if flags & O_ACCMODE == O_WRONLY {
            return None;
        }
        self.category(path)
    }
}
