//! Ring-buffer records: whatever the kernel side sends, `decode` returns a record or an error,
//! and a record never claims more than its fixed buffers hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::kernel::{
    decode::{Mark, Record, decode},
    sockaddr::SockAddr,
};
use monitor_common::{ARGS_MAX, COMM_LEN, MARK_TEXT_MAX, PATH_MAX, SOCKADDR_MAX};

fuzz_target!(|data: &[u8]| {
    let Ok(record) = decode(data) else {
        return;
    };
    assert!(record.header().comm.len() <= COMM_LEN);
    match &record {
        Record::Open(open) => assert!(open.path.len() < PATH_MAX && open.kpath.len() < PATH_MAX),
        Record::Name(name) => {
            assert!(name.base.len() < PATH_MAX && name.old.len() < PATH_MAX && name.new.len() < PATH_MAX)
        }
        Record::Uring(uring) => assert!(uring.tail.len() < PATH_MAX),
        Record::Connect(connect) | Record::Send(connect) => {
            assert!(connect.addr.len() <= SOCKADDR_MAX);
            // What the daemon does next with the address.
            let addr = SockAddr::parse(&connect.addr);
            let _ = (addr.render(), addr.ip(), addr.port());
        }
        Record::ExecFailed(exec) | Record::Image(exec) => {
            assert!(exec.filename.len() < PATH_MAX);
            assert!(exec.argv.iter().map(|a| a.len() + 1).sum::<usize>() <= ARGS_MAX + 1);
        }
        Record::Marker(marker) => match &marker.mark {
            // A `str`'s characters become UTF-8 of at most twice their bytes (Latin-1), UTF-32
            // of at most the same length.
            Mark::Main { target, .. } => assert!(target.len() <= 2 * MARK_TEXT_MAX),
            Mark::EvalEnter { filename } => {
                assert!(filename.as_ref().is_none_or(|f| f.len() <= 2 * MARK_TEXT_MAX));
            }
            Mark::EvalExit | Mark::RunningMain => {}
        },
        Record::Fork(_) | Record::Exit(_) | Record::Target(_) | Record::Socket(_) => {}
    }
});
