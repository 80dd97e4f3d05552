//! How full the kernel ring buffer is: its producer and consumer positions, read from the
//! map's own pages (a second, read-only mapping beside aya's), so sampling costs no syscall.

use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

/// Read-only views of the consumer and producer position pages of a `BPF_MAP_TYPE_RINGBUF`.
pub(crate) struct RingFill {
    consumer: NonNull<libc::c_void>,
    producer: NonNull<libc::c_void>,
    page: usize,
    size: u64,
}

impl RingFill {
    /// Maps the position pages of the ring buffer map `fd` of `size` data bytes.
    pub(crate) fn new(fd: &impl AsRawFd, size: u32) -> io::Result<Self> {
        // SAFETY: no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let consumer = map_page(fd.as_raw_fd(), page, 0)?;
        let producer = match map_page(fd.as_raw_fd(), page, page) {
            Ok(p) => p,
            Err(err) => {
                // SAFETY: `consumer` was mapped above with length `page` and is not used again.
                unsafe { libc::munmap(consumer.as_ptr(), page) };
                return Err(err);
            }
        };
        Ok(Self { consumer, producer, page, size: u64::from(size) })
    }

    /// Bytes written by the kernel and not yet consumed, as a share of the ring (0 to 1).
    pub(crate) fn ratio(&self) -> f64 {
        // SAFETY: both pages stay mapped while `self` lives; the positions are the first
        // naturally aligned u64 of each page, updated atomically by the kernel and by aya.
        let (consumer, producer) = unsafe {
            (
                (*self.consumer.as_ptr().cast::<AtomicU64>()).load(Ordering::Acquire),
                (*self.producer.as_ptr().cast::<AtomicU64>()).load(Ordering::Acquire),
            )
        };
        (producer.saturating_sub(consumer).min(self.size) as f64) / self.size as f64
    }
}

fn map_page(fd: RawFd, page: usize, offset: usize) -> io::Result<NonNull<libc::c_void>> {
    // SAFETY: a fresh shared read-only mapping of the map fd; the kernel checks the offset.
    let ptr = unsafe {
        libc::mmap(std::ptr::null_mut(), page, libc::PROT_READ, libc::MAP_SHARED, fd, offset as libc::off_t)
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: both were mapped with length `page` in `new` and nothing refers to them now.
        unsafe {
            libc::munmap(self.consumer.as_ptr(), self.page);
            libc::munmap(self.producer.as_ptr(), self.page);
        }
    }
}
