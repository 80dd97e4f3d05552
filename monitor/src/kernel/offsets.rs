//! Resolves the kernel struct offsets the programs need from the running kernel's BTF.

use std::{fs, path::Path};

use monitor_common::KernelOffsets;

use crate::{
    kernel::btf::{Btf, BtfError},
    kernel::error::StartError,
};

/// The first candidate member path that exists: field names moved between kernel versions.
fn first(btf: &Btf, strukt: &str, candidates: &[&str]) -> Result<u32, BtfError> {
    let mut last_err = None;
    for path in candidates {
        match btf.member_offset(strukt, path) {
            Ok(offset) => return Ok(offset),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.expect("at least one candidate"))
}

pub(crate) fn resolve(btf: &Btf, tracefs: &Path) -> Result<KernelOffsets, StartError> {
    let offsets = offsets(btf, tracefs)?;
    // The path walk reads `d_parent` and `d_name` (hash, len, name) as one block.
    let (parent, len, name) = (offsets.dentry_parent, offsets.dentry_name_len, offsets.dentry_name);
    if len != parent + 12 || name != parent + 16 {
        return Err(StartError::Btf(BtfError::Malformed(format!(
            "struct dentry: d_name (len at {len}, name at {name}) does not follow d_parent (at {parent})"
        ))));
    }
    Ok(offsets)
}

fn offsets(btf: &Btf, tracefs: &Path) -> Result<KernelOffsets, StartError> {
    Ok(KernelOffsets {
        task_tgid: btf.member_offset("task_struct", "tgid")?,
        task_pid: btf.member_offset("task_struct", "pid")?,
        task_real_parent: btf.member_offset("task_struct", "real_parent")?,
        task_mm: btf.member_offset("task_struct", "mm")?,
        task_exit_code: btf.member_offset("task_struct", "exit_code")?,
        mm_exe_file: btf.member_offset("mm_struct", "exe_file")?,
        mm_arg_start: btf.member_offset("mm_struct", "arg_start")?,
        mm_arg_end: btf.member_offset("mm_struct", "arg_end")?,
        file_inode: btf.member_offset("file", "f_inode")?,
        inode_ino: btf.member_offset("inode", "i_ino")?,
        inode_sb: btf.member_offset("inode", "i_sb")?,
        // 6.11+: i_mtime_sec/nsec; 6.7-6.10: __i_mtime; before: i_mtime.
        inode_mtime_sec: first(btf, "inode", &["i_mtime_sec", "__i_mtime.tv_sec", "i_mtime.tv_sec"])?,
        inode_mtime_nsec: first(btf, "inode", &["i_mtime_nsec", "__i_mtime.tv_nsec", "i_mtime.tv_nsec"])?,
        sb_dev: btf.member_offset("super_block", "s_dev")?,
        tp_exit_group_dead: group_dead_offset(tracefs),
        task_group_leader: btf.member_offset("task_struct", "group_leader")?,
        task_start_boottime: first(btf, "task_struct", &["start_boottime", "real_start_time"])?,
        task_files: btf.member_offset("task_struct", "files")?,
        task_fs: btf.member_offset("task_struct", "fs")?,
        files_fdt: btf.member_offset("files_struct", "fdt")?,
        fdtable_fd: btf.member_offset("fdtable", "fd")?,
        fdtable_max_fds: btf.member_offset("fdtable", "max_fds")?,
        file_path: btf.member_offset("file", "f_path")?,
        fs_pwd: btf.member_offset("fs_struct", "pwd")?,
        path_mnt: btf.member_offset("path", "mnt")?,
        path_dentry: btf.member_offset("path", "dentry")?,
        dentry_parent: btf.member_offset("dentry", "d_parent")?,
        dentry_name_len: btf.member_offset("dentry", "d_name.len")?,
        dentry_name: btf.member_offset("dentry", "d_name.name")?,
        mount_mnt: btf.member_offset("mount", "mnt")?,
        mount_parent: btf.member_offset("mount", "mnt_parent")?,
        mount_mountpoint: btf.member_offset("mount", "mnt_mountpoint")?,
        vfsmount_root: btf.member_offset("vfsmount", "mnt_root")?,
        // 6.x: a const i_nlink in a union with __i_nlink.
        inode_nlink: first(btf, "inode", &["__i_nlink", "i_nlink"])?,
        inode_mode: btf.member_offset("inode", "i_mode")?,
        task_ti_status: btf.member_offset("task_struct", "thread_info.status")?,
        task_thread_fsbase: fsbase(btf),
        ..uring(btf)
    })
}

/// Where a task keeps its TLS base, which is how the stack walk finds a thread's Python state
/// (x86-64's `thread.fsbase`). Without it there are no Python stacks, and nothing else is lost.
fn fsbase(btf: &Btf) -> u32 {
    btf.member_offset("task_struct", "thread.fsbase").unwrap_or_else(|err| {
        tracing::warn!(error = %err, "no Python stacks: the kernel's task layout has no TLS base");
        0
    })
}

/// io_uring's request structs, which are internal to it: when one an opcode needs is missing,
/// those submissions are reported by opcode alone (opens, connects, sendmsgs and sockets on one
/// side, renames, links and symlinks on the other).
fn uring(btf: &Btf) -> KernelOffsets {
    let requests = (|| {
        Ok::<_, BtfError>(KernelOffsets {
            uring_layout: 1,
            io_open_dfd: btf.member_offset("io_open", "dfd")?,
            io_open_file_slot: btf.member_offset("io_open", "file_slot")?,
            io_open_filename: btf.member_offset("io_open", "filename")?,
            io_open_flags: btf.member_offset("io_open", "how.flags")?,
            filename_name: btf.member_offset("filename", "name")?,
            io_connect_addr: btf.member_offset("io_connect", "addr")?,
            io_connect_addr_len: btf.member_offset("io_connect", "addr_len")?,
            io_sr_msg_umsg: btf.member_offset("io_sr_msg", "umsg")?,
            io_socket_domain: btf.member_offset("io_socket", "domain")?,
            io_socket_type: btf.member_offset("io_socket", "type")?,
            io_socket_protocol: btf.member_offset("io_socket", "protocol")?,
            io_socket_file_slot: btf.member_offset("io_socket", "file_slot")?,
            ..KernelOffsets::default()
        })
    })();
    let requests = requests.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "io_uring requests will be reported by opcode alone");
        KernelOffsets::default()
    });
    match uring_names(btf) {
        Ok(names) => uring_with_names(requests, names),
        Err(err) => {
            tracing::warn!(error = %err, "io_uring renames, links and symlinks will be reported by opcode alone");
            requests
        }
    }
}

/// `struct io_rename` and `struct io_link` (5.15+): the kernel's copies of both names and the
/// directory fds, taken when the request was prepared.
fn uring_names(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    Ok(KernelOffsets {
        uring_names: 1,
        filename_name: btf.member_offset("filename", "name")?,
        io_rename_old_dfd: btf.member_offset("io_rename", "old_dfd")?,
        io_rename_new_dfd: btf.member_offset("io_rename", "new_dfd")?,
        io_rename_oldpath: btf.member_offset("io_rename", "oldpath")?,
        io_rename_newpath: btf.member_offset("io_rename", "newpath")?,
        io_rename_flags: btf.member_offset("io_rename", "flags")?,
        io_link_old_dfd: btf.member_offset("io_link", "old_dfd")?,
        io_link_new_dfd: btf.member_offset("io_link", "new_dfd")?,
        io_link_oldpath: btf.member_offset("io_link", "oldpath")?,
        io_link_newpath: btf.member_offset("io_link", "newpath")?,
        io_link_flags: btf.member_offset("io_link", "flags")?,
        ..KernelOffsets::default()
    })
}

/// `requests` with the io_uring name offsets of `names`.
fn uring_with_names(requests: KernelOffsets, names: KernelOffsets) -> KernelOffsets {
    KernelOffsets {
        filename_name: names.filename_name,
        uring_names: names.uring_names,
        io_rename_old_dfd: names.io_rename_old_dfd,
        io_rename_new_dfd: names.io_rename_new_dfd,
        io_rename_oldpath: names.io_rename_oldpath,
        io_rename_newpath: names.io_rename_newpath,
        io_rename_flags: names.io_rename_flags,
        io_link_old_dfd: names.io_link_old_dfd,
        io_link_new_dfd: names.io_link_new_dfd,
        io_link_oldpath: names.io_link_oldpath,
        io_link_newpath: names.io_link_newpath,
        io_link_flags: names.io_link_flags,
        ..requests
    }
}

/// Offset of `group_dead` in the `sched_process_exit` tracepoint record (0 when absent).
fn group_dead_offset(tracefs: &Path) -> u32 {
    let format = tracefs.join("events/sched/sched_process_exit/format");
    fs::read_to_string(format).ok().and_then(|text| parse_field_offset(&text, "group_dead")).unwrap_or(0)
}

/// Finds `offset:N;` on the `field:` line that declares `name` in a tracefs format file.
pub(crate) fn parse_field_offset(format: &str, name: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?.split(';').next()?;
        let field = decl.split_whitespace().last()?.split('[').next()?;
        if field != name {
            return None;
        }
        line.split(';').find_map(|part| part.trim().strip_prefix("offset:")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracefs_format_field() {
        let format = "name: sched_process_exit\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";
        assert_eq!(parse_field_offset(format, "group_dead"), Some(32));
        assert_eq!(parse_field_offset(format, "comm"), Some(8));
        assert_eq!(parse_field_offset(format, "prio"), None);
    }

    #[test]
    fn resolves_on_this_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else {
            return crate::testing::cannot_run("no /sys/kernel/btf/vmlinux on this machine");
        };
        let offsets = resolve(&btf, Path::new("/nonexistent")).expect("offsets");
        assert_ne!(offsets.task_real_parent, 0);
        assert_ne!(offsets.mm_exe_file, 0);
        assert_eq!(offsets.tp_exit_group_dead, 0);
    }

    /// Each family of io_uring offsets falls back alone: a kernel without `struct io_open`
    /// still reads renames and links, one without `struct io_rename` still reads opens.
    #[test]
    fn io_uring_offsets_fall_back_by_family() {
        use crate::kernel::btf::tests::synthetic;
        let filename: (&str, &[&str]) = ("filename", &["name", "uptr"]);
        let names = ["file", "old_dfd", "new_dfd", "oldpath", "newpath", "flags"];
        let only_names = synthetic(&[filename, ("io_rename", &names), ("io_link", &names)]);
        let o = uring(&only_names);
        assert_eq!((o.uring_layout, o.uring_names), (0, 1));
        assert_eq!((o.io_rename_old_dfd, o.io_rename_newpath, o.io_link_flags), (8, 32, 40));
        assert_eq!(o.filename_name, 0);
        let requests = [
            filename,
            ("io_open", &["file", "dfd", "file_slot", "filename", "how:open_how"][..]),
            ("open_how", &["flags"][..]),
            ("io_connect", &["file", "addr", "addr_len"][..]),
            ("io_sr_msg", &["file", "umsg"][..]),
            ("io_socket", &["file", "domain", "type", "protocol", "file_slot"][..]),
        ];
        let o = uring(&synthetic(&requests));
        assert_eq!((o.uring_layout, o.uring_names), (1, 0));
        assert_eq!((o.io_open_filename, o.io_open_flags, o.io_socket_file_slot), (24, 32, 32));
        assert_eq!(o.io_rename_newpath, 0);
        let o = uring(&synthetic(&[filename]));
        assert_eq!(o, KernelOffsets::default());
    }

    #[test]
    fn io_uring_names_resolve_on_this_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else {
            return crate::testing::cannot_run("no /sys/kernel/btf/vmlinux on this machine");
        };
        let offsets = resolve(&btf, Path::new("/nonexistent")).expect("offsets");
        if offsets.uring_names == 0 {
            return crate::testing::cannot_run("this kernel's BTF has no struct io_rename/io_link");
        }
        // Both overlay the start of `io_kiocb` after its `struct file *`.
        assert_eq!(offsets.io_rename_old_dfd, 8);
        assert_ne!(offsets.io_rename_newpath, offsets.io_rename_oldpath);
        assert_ne!(offsets.io_link_newpath, 0);
        assert_eq!(offsets.filename_name, 0);
    }
}
