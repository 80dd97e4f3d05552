//! One premain per node. Two would fight over the same processes: each resumes the processes
//! the other holds (it cannot tell them from ones a killed premain left stopped), and every
//! alert would be raised twice.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

/// Where the lock lives unless `--lock-file` says otherwise.
pub const DEFAULT_LOCK: &str = "/run/premain/premain.lock";

/// Held for the life of the daemon; the kernel releases it when the process ends, however
/// it ends (so a SIGKILLed premain never blocks the next one).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another premain is already running on this node ({}, lock {}); stop it first: two would resume each other's held processes and raise every alert twice",
        holder.map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}")),
        path.display()
    )]
    Held { path: PathBuf, holder: Option<u32> },
    #[error("cannot use the lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Takes the node-wide lock at `path` (an exclusive `flock`) and writes this pid into it.
pub fn acquire(path: &Path) -> Result<InstanceLock, LockError> {
    let io_error = |source| LockError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_error)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_error)?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held { path: path.to_owned(), holder: text.trim().parse().ok() });
        }
        return Err(io_error(err));
    }
    file.set_len(0).map_err(io_error)?;
    file.rewind().map_err(io_error)?;
    writeln!(file, "{}", std::process::id()).map_err(io_error)?;
    Ok(InstanceLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let path =
            std::env::temp_dir().join(format!("premain-lock-test-{}/premain.lock", std::process::id()));
        let first = acquire(&path).unwrap();
        let err = acquire(&path).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        assert!(!message.contains('\n'), "{message}");
        drop(first);
        let again = acquire(&path).unwrap();
        drop(again);
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }
}
