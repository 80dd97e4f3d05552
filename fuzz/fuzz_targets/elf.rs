//! Executables premain is asked to judge: any file a process runs, so hostile. Examining the
//! bytes returns a verdict or an error, and every probe offset it finds lies inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::python::interpreter::examine;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(info)) = examine(data) else {
        return;
    };
    for (name, &offset) in info.symbols() {
        assert!(offset < data.len() as u64, "{name} at {offset:#x} is past the end of the file");
    }
    if let Some((major, _)) = info.version() {
        assert_eq!(major, 3);
    }
});
