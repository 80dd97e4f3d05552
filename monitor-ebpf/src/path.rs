//! The kernel's own path of an opened file or a directory, walked from its `struct path` the
//! way `d_path` does it (`bpf_d_path` is not callable from tracepoints): dentry to parent up to
//! the mount's root, then across to the mount point in the parent mount, until the root mount.
//! The walk is bounded; a path with more components or bytes keeps the innermost ones and is
//! flagged. Same idea as Tetragon's `bpf/lib/bpf_d_path.h`.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, generated::bpf_probe_read_kernel as read_kernel_bytes},
    macros::map,
    maps::PerCpuArray,
};
use monitor_common::{FLAG_KPATH_TRUNCATED, FLAG_NO_FILE, OpenRecord, PATH_MAX};

use crate::{maps::offsets, task::read};

/// Components walked at most (mounts crossed count as one).
const COMPONENTS: usize = 48;
/// Longest name a component can have (`NAME_MAX`).
const NAME_MAX: usize = 255;
const MASK: usize = PATH_MAX - 1;

/// The path is assembled backwards, ending at `PATH_MAX`; the extra room lets the verifier
/// see that a name written at any masked offset stays inside. The walk's own state lives here
/// too, not in registers: values loaded from a map are unknown to the verifier, so every
/// iteration looks alike to it and the paths through the loop body are pruned instead of
/// multiplying with each component.
#[repr(C)]
pub(crate) struct PathBuf {
    dentry: u64,
    mount: u64,
    /// The root dentry of `mount`.
    root: u64,
    pos: u64,
    /// `WALKING`, `DONE`, `CUT` or `FAILED`.
    state: u64,
    pub(crate) bytes: [u8; PATH_MAX + NAME_MAX + 1],
}

const WALKING: u64 = 0;
const DONE: u64 = 1;
const CUT: u64 = 2;
const FAILED: u64 = 3;

#[map]
static PATHBUF: PerCpuArray<PathBuf> = PerCpuArray::with_max_entries(1, 0);

/// A walked path: `len` bytes at `buf` (the per-CPU buffer).
pub(crate) struct Walked {
    pub(crate) buf: *const u8,
    pub(crate) len: usize,
    pub(crate) truncated: bool,
}

/// `d_parent` and `d_name` of a dentry, read in one go (they are adjacent: `d_parent`, then
/// the `qstr` of hash, length and name pointer), which the loader checks.
#[repr(C)]
struct Up {
    parent: u64,
    hash: u32,
    len: u32,
    name: u64,
}

/// One component up; the new state. Two reads per component (the dentry's parent and name,
/// then the name's bytes); a mount's root is read once per mount.
#[inline(always)]
fn step(w: *mut PathBuf) -> u64 {
    let off = offsets();
    // SAFETY: `w` is the per-CPU slot; volatile keeps each value a load from the map.
    let (mut dentry, mut mount, mut pos, mut root) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*w).dentry),
            core::ptr::read_volatile(&raw const (*w).mount),
            core::ptr::read_volatile(&raw const (*w).pos),
            core::ptr::read_volatile(&raw const (*w).root),
        )
    };
    if dentry == root {
        let Some(parent) = read::<u64>(mount, off.mount_parent) else { return FAILED };
        if parent == mount || parent == 0 {
            return DONE;
        }
        let Some(point) = read::<u64>(mount, off.mount_mountpoint) else { return FAILED };
        let Some(parent_root) = read::<u64>(parent, off.mount_mnt + off.vfsmount_root) else { return FAILED };
        dentry = point;
        mount = parent;
        root = parent_root;
    } else {
        let Some(up) = read::<Up>(dentry, off.dentry_parent) else { return FAILED };
        if up.parent == dentry || up.parent == 0 {
            // The root of a filesystem that is not mounted (pipes, sockets, a lazily
            // unmounted tree): the path so far.
            return DONE;
        }
        let len = (up.len as usize) & NAME_MAX;
        // Keeps the whole path under PATH_MAX bytes.
        if (pos as usize) < len + 2 {
            return CUT;
        }
        pos -= (len + 1) as u64;
        let at = pos as usize & MASK;
        // SAFETY: as above; `at < PATH_MAX` and `at + 1 + len` stays inside `bytes`
        // (`len <= NAME_MAX`).
        let ret = unsafe {
            let bytes = &mut (*w).bytes;
            bytes[at] = b'/';
            read_kernel_bytes(bytes.as_mut_ptr().add(at + 1).cast(), len as u32, up.name as *const _)
        };
        if ret != 0 {
            return FAILED;
        }
        dentry = up.parent;
    }
    // SAFETY: as above.
    unsafe {
        core::ptr::write_volatile(&raw mut (*w).dentry, dentry);
        core::ptr::write_volatile(&raw mut (*w).mount, mount);
        core::ptr::write_volatile(&raw mut (*w).pos, pos);
        core::ptr::write_volatile(&raw mut (*w).root, root);
    }
    WALKING
}

/// Walks the `struct path` at `path` (a kernel address).
#[inline(always)]
pub(crate) fn walk(path: u64) -> Option<Walked> {
    let off = offsets();
    let vfsmount: u64 = read(path, off.path_mnt)?;
    let dentry: u64 = read(path, off.path_dentry)?;
    let mount = vfsmount.checked_sub(u64::from(off.mount_mnt))?;
    let root: u64 = read(vfsmount, off.vfsmount_root)?;
    let w = PATHBUF.get_ptr_mut(0)?;
    // SAFETY: the per-CPU slot is valid and used only by this program invocation.
    unsafe {
        core::ptr::write_volatile(&raw mut (*w).dentry, dentry);
        core::ptr::write_volatile(&raw mut (*w).mount, mount);
        core::ptr::write_volatile(&raw mut (*w).root, root);
        core::ptr::write_volatile(&raw mut (*w).pos, PATH_MAX as u64);
        core::ptr::write_volatile(&raw mut (*w).state, WALKING);
    }
    for _ in 0..COMPONENTS {
        let state = step(w);
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&raw mut (*w).state, state) };
        if state != WALKING {
            break;
        }
    }
    // SAFETY: as above.
    let (state, pos) = unsafe {
        (core::ptr::read_volatile(&raw const (*w).state), core::ptr::read_volatile(&raw const (*w).pos))
    };
    if state == FAILED {
        return None;
    }
    // SAFETY: as above.
    let bytes = unsafe { &mut (*w).bytes };
    let mut pos = (pos as usize) & (2 * PATH_MAX - 1);
    if pos > PATH_MAX {
        return None;
    }
    if pos == PATH_MAX {
        pos -= 1;
        bytes[pos & MASK] = b'/';
    }
    let start = pos & MASK;
    Some(Walked { buf: bytes.as_ptr().wrapping_add(start), len: PATH_MAX - pos, truncated: state != DONE })
}

/// The `struct file` behind descriptor `fd` of the current task.
#[inline(always)]
pub(crate) fn current_file(fd: i64) -> Option<u64> {
    let off = offsets();
    if fd < 0 {
        return None;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() };
    let files: u64 = read(task, off.task_files)?;
    let fdt: u64 = read(files, off.files_fdt)?;
    let max: u32 = read(fdt, off.fdtable_max_fds)?;
    if fd as u64 >= u64::from(max) {
        return None;
    }
    let fds: u64 = read(fdt, off.fdtable_fd)?;
    let file: u64 = read(fds, (fd as u32).wrapping_mul(8))?;
    (file != 0).then_some(file)
}

/// The current task's working directory (`fs->pwd`), as a `struct path` address.
#[inline(always)]
pub(crate) fn current_pwd() -> Option<u64> {
    let off = offsets();
    // SAFETY: helper without preconditions.
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() };
    let fs: u64 = read(task, off.task_fs)?;
    Some(fs + u64::from(off.fs_pwd))
}

/// `(dev, ino, nlink, i_mode)` of a `struct file`.
#[inline(always)]
pub(crate) fn identity(file: u64) -> Option<(u64, u64, u32, u32)> {
    let off = offsets();
    let inode: u64 = read(file, off.file_inode)?;
    let sb: u64 = read(inode, off.inode_sb)?;
    let dev = u64::from(read::<u32>(sb, off.sb_dev)?);
    let ino: u64 = read(inode, off.inode_ino)?;
    let nlink: u32 = read(inode, off.inode_nlink)?;
    let mode: u16 = read(inode, off.inode_mode)?;
    Some((dev, ino, nlink, u32::from(mode)))
}

/// Copies a walked path into `dst` (which has room for `PATH_MAX` bytes); returns its length.
#[inline(always)]
pub(crate) fn copy(walked: &Walked, dst: *mut u8) -> usize {
    let len = walked.len & MASK;
    if len == 0 {
        return 0;
    }
    // SAFETY: `len < PATH_MAX` fits `dst`; the source is the per-CPU buffer.
    let ret = unsafe { read_kernel_bytes(dst.cast(), len as u32, walked.buf.cast()) };
    if ret == 0 { len } else { 0 }
}

/// Fills the file part of an open record whose `result` is set: the opened file's identity
/// and the kernel's path at the start of `tail`; returns the path's length (flags say when
/// it is cut, or when the file could not be read from the descriptor table).
#[inline(always)]
pub(crate) fn opened(rec: &mut OpenRecord) -> usize {
    rec.dev = 0;
    rec.ino = 0;
    rec.nlink = 0;
    rec.file_mode = 0;
    rec._pad = 0;
    let mut kpath_len = 0;
    if rec.result >= 0 {
        match current_file(rec.result) {
            Some(file) => {
                if let Some((dev, ino, nlink, file_mode)) = identity(file) {
                    (rec.dev, rec.ino, rec.nlink, rec.file_mode) = (dev, ino, nlink, file_mode);
                }
                match walk(file + u64::from(offsets().file_path)) {
                    Some(walked) => {
                        if walked.truncated {
                            rec.header.flags |= FLAG_KPATH_TRUNCATED;
                        }
                        kpath_len = copy(&walked, rec.tail.as_mut_ptr());
                    }
                    None => rec.header.flags |= FLAG_NO_FILE,
                }
            }
            None => rec.header.flags |= FLAG_NO_FILE,
        }
    }
    let kpath_len = kpath_len & (PATH_MAX - 1);
    rec.kpath_len = kpath_len as u32;
    kpath_len
}
